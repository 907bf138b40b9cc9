#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a bare GPU machine with no network, install the carried wheels (.whl/),
# then run, cheapest first and each bounded by `timeout` within one overall budget (480 s by default):
#   wheels       pip install --no-index --no-deps --target TMP .whl/*.whl, then PYTHONPATH=TMP
#   imports      the project and its runtime dependencies import; their versions
#   gpu_info     the CUDA device as PyTorch sees it                                   (GPU only)
#   pytest_gpu   python -m pytest -m gpu tests/test_gpu.py (cuDNN, decoding, AMP, torch.compile, caption)
#   benchmark    captioning benchmark --device cuda --workload matched --json OUTDIR/benchmark.json
#   matmul_bf16  the bf16 matmul rate and the bf16-autocast training step's fraction of it (GPU only)
#   main         python scripts/main.py on the GPU: configs/shapes.yaml for the main job's length
# A failed step is recorded and the script goes on. Writes OUTDIR/gpu_check.log (everything printed),
# OUTDIR/gpu_check.json (each step: name, status passed/failed/skipped, seconds, reason, key figures),
# OUTDIR/benchmark.json, OUTDIR/pytest_gpu.xml and OUTDIR/main_metrics.json.
#
# Usage: bash scripts/gpu_check.sh [--cpu] [--wheels DIR] [--only STEP,...] [OUTDIR]
#   --cpu         dry run on the CPU: GPU-only steps are skipped with the reason, the tests skip, the
#                 benchmark runs the tiny workload and the main job two steps on a tiny dataset
#   --wheels DIR  wheel folder (default .whl, made by scripts/gpu_wheels.sh; with --cpu, none: the packages
#                 installed here are used unless --wheels is given)
#   --only STEPS  run only these steps after `wheels` (which always runs), e.g. --only pytest_gpu,main
#   OUTDIR        default $OUT (set on the device machine), else runs/gpu_check in the repository
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET (seconds, default 480), GPU_CHECK_MAIN_ARGS
# (extra arguments for scripts/main.py), GPU_CHECK_KEEP=1 keeps the work folder (checkpoints, data).
# Exit status: 0 when no step failed, 1 otherwise, 2 on a usage error.
set -uo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
STEP_NAMES="wheels imports gpu_info pytest_gpu benchmark matmul_bf16 main"
MODE=gpu WHEELS="" OUTDIR="" ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) MODE=cpu ;;
        --wheels) [ $# -ge 2 ] || { echo "gpu_check.sh: --wheels needs a folder" >&2; exit 2; }; WHEELS=$2; shift ;;
        --only) [ $# -ge 2 ] || { echo "gpu_check.sh: --only needs step names" >&2; exit 2; }; ONLY=${2//,/ }; shift
            for step in $ONLY; do
                case " $STEP_NAMES " in *" $step "*) ;; *) echo "gpu_check.sh: unknown step $step (steps: $STEP_NAMES)" >&2; exit 2 ;; esac
            done ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$OUTDIR" ] || { echo "gpu_check.sh: one output folder only" >&2; exit 2; }; OUTDIR=$1 ;;
    esac
    shift
done

CALLER=$(pwd)  # folders given on the command line are relative to where the script was called from
case "$OUTDIR" in /*|"") ;; *) OUTDIR=$CALLER/$OUTDIR ;; esac
case "$WHEELS" in /*|"") ;; *) WHEELS=$CALLER/$WHEELS ;; esac
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
PY=${PYTHON:-python3}
OUTDIR=${OUTDIR:-${OUT:-$REPO/runs/gpu_check}}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || { echo "gpu_check.sh: cannot create $OUTDIR" >&2; exit 2; }
[ -n "$WHEELS" ] || [ "$MODE" = cpu ] || WHEELS=$REPO/.whl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
LOG=$OUTDIR/gpu_check.log STEPS=$WORK/steps.jsonl
BUDGET=${GPU_CHECK_BUDGET:-480}
START=$(date +%s) STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DEADLINE=$((START + BUDGET))
: >"$LOG"
rm -f "$OUTDIR"/{gpu_check.json,benchmark.json,pytest_gpu.xml,main_metrics.json}
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # deterministic cuBLAS

finish() {
    "$PY" scripts/gpu_check.py summarize --steps "$STEPS" --outdir "$OUTDIR" --work "$WORK" --mode "$MODE" \
        --started "$STARTED" --start-epoch "$START" --budget "$BUDGET" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [ "${GPU_CHECK_KEEP:-0}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"
    exit "$rc"
}
trap finish EXIT
trap 'exit 1' INT TERM

say() { echo "$*" | tee -a "$LOG"; }

record() {  # record NAME STATUS SECONDS REASON COMMAND [key=value ...]
    local name=$1 status=$2 seconds=$3 reason=$4 command=$5
    shift 5
    local figures=()
    for kv in "$@"; do figures+=(--figure "$kv"); done
    "$PY" scripts/gpu_check.py record --steps "$STEPS" --name "$name" --status "$status" --seconds "$seconds" \
        --reason "$reason" --command "$command" "${figures[@]}" || say "gpu_check.sh: could not record $name"
}

skip_step() {  # skip_step NAME REASON
    say "== $1: skipped: $2"
    record "$1" skipped 0 "$2" ""
}

selected() {  # selected NAME: whether the step runs: always `wheels`, else all or those --only names
    [ -z "$ONLY" ] || [ "$1" = wheels ] || case " $ONLY " in *" $1 "*) true ;; *) false ;; esac
}

run_step() {  # run_step NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout, output to the log and NAME.out
    local name=$1 cap=$2
    shift 2
    if ! selected "$name"; then
        skip_step "$name" "not selected (--only ${ONLY// /,})"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s) - 5))
    if [ "$left" -lt 10 ]; then
        skip_step "$name" "out of the ${BUDGET} s budget"
        return 1
    fi
    local limit=$((cap < left ? cap : left))
    say "== $name (at most ${limit} s): $*"
    local t0 rc
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.out" >>"$LOG"
    rc=${PIPESTATUS[0]}
    tail -n 15 "$WORK/$name.out"
    local seconds
    seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    if [ "$rc" -eq 0 ]; then
        say "== $name: passed in ${seconds} s"
        record "$name" passed "$seconds" "" "$*"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "== $name: failed: timed out after ${limit} s"
        record "$name" failed "$seconds" "timed out after ${limit} s" "$*"
    else
        say "== $name: failed with exit status $rc (see gpu_check.log)"
        record "$name" failed "$seconds" "exit status $rc: $(grep -v '^\s*$' "$WORK/$name.out" | tail -n 1 | cut -c1-300)" "$*"
    fi
    return "$rc"
}

say "gpu_check ($MODE mode) in $REPO, output in $OUTDIR, budget ${BUDGET} s, started $STARTED"

# 1. The carried wheels of the packages the GPU machine lacks.
if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    # shellcheck disable=SC2016  # expanded by the inner bash, so the log shows the command, not 25 paths
    run_step wheels 60 bash -c '"$0" -m pip install -q --no-index --no-deps --no-compile --target "$1" "$2"/*.whl' \
        "$PY" "$WORK/site" "$WHEELS" &&
        export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
elif [ "$MODE" = cpu ] && [ -z "$WHEELS" ]; then
    skip_step wheels "--cpu dry run: the packages installed here are used (--wheels DIR installs wheels first; bash scripts/gpu_wheels.sh makes them)"
else
    say "== wheels: failed: no wheels in $WHEELS"
    record wheels failed 0 "no wheels in ${WHEELS}: run 'bash scripts/gpu_wheels.sh' on a machine with PyPI access, then carry .whl to the GPU machine (docs/gpu.md)" ""
fi

# 2. The project and its dependencies import (from the wheels where installed).
run_step imports 60 "$PY" scripts/gpu_check.py imports --out "$WORK/imports.json"

# 3. The device.
if [ "$MODE" = cpu ]; then
    skip_step gpu_info "--cpu dry run: no GPU is used"
else
    run_step gpu_info 30 "$PY" scripts/gpu_check.py gpu-info --out "$WORK/gpu_info.json"
fi

# 4. The GPU tests (they skip with the reason where CUDA is absent, as in --cpu).
run_step pytest_gpu 200 "$PY" -m pytest -m gpu tests/test_gpu.py -v -rs --durations=10 -p no:cacheprovider \
    --junitxml="$OUTDIR/pytest_gpu.xml"

# 5. The benchmark: the matched workload on the GPU; the tiny one on the CPU.
if [ "$MODE" = cpu ]; then
    run_step benchmark 60 "$PY" -m captioning.cli.main benchmark --device cpu --workload tiny --warmup 0 --repeats 1 \
        --skip memory end-to-end --json "$OUTDIR/benchmark.json"
else
    run_step benchmark 120 "$PY" -m captioning.cli.main benchmark --device cuda --workload matched \
        --json "$OUTDIR/benchmark.json" --markdown
fi

# 6. The bf16 matmul rate next to the benchmark's fp32 one.
if [ "$MODE" = cpu ]; then
    skip_step matmul_bf16 "--cpu dry run: the bf16 matmul rate and the bf16-autocast training row are measured on the GPU only"
elif selected matmul_bf16 && [ ! -f "$OUTDIR/benchmark.json" ]; then
    skip_step matmul_bf16 "the benchmark wrote no report"
else
    run_step matmul_bf16 45 "$PY" scripts/gpu_check.py matmul-bf16 --benchmark "$OUTDIR/benchmark.json" \
        --out "$WORK/matmul_bf16.json"
fi

# 7. The main job: configs/shapes.yaml as it is (bf16-mixed, 12 epochs), on the GPU.
BACKEND=python  # the Java-free metrics: pycocoevalcap (too large to carry) and Java are not on the GPU machine
[ "$MODE" = gpu ] && command -v java >/dev/null && "$PY" -c "import pycocoevalcap" 2>/dev/null && BACKEND=auto
if [ "$MODE" = cpu ]; then
    MAIN_ARGS=(--trainer.accelerator=cpu --trainer.max_steps=2 --trainer.limit_val_batches=1
               --data.init_args.root="$WORK/shapes" --data.init_args.num_train=8 --data.init_args.num_val=4
               --data.init_args.num_test=4 --data.init_args.image_size=32 --data.init_args.batch_size=4
               --data.init_args.eval_batch_size=4 --beam-size 1)
else
    MAIN_ARGS=(--trainer.accelerator=gpu --trainer.devices=1)
fi
# shellcheck disable=SC2086  # GPU_CHECK_MAIN_ARGS is a list of arguments
run_step main 360 "$PY" scripts/main.py --out "$WORK/main" --metrics-backend "$BACKEND" \
    --trainer.enable_progress_bar=false "${MAIN_ARGS[@]}" ${GPU_CHECK_MAIN_ARGS:-}
[ -f "$WORK/main/metrics_test.json" ] && cp "$WORK/main/metrics_test.json" "$OUTDIR/main_metrics.json"
exit 0  # the EXIT trap writes gpu_check.json and sets the exit status
