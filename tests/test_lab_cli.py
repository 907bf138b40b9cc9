"""The ``captioning lab`` command: configs, overrides, outputs and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioning.cli.lab import EXPERIMENTS, main
from captioning.lab.config import ConfigError, coerce, load_config, parse_overrides
from captioning.lab.gradflow import GradFlowConfig
from captioning.lab.toy import ToyConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "lab"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_has_a_config_that_loads(name: str) -> None:
    config = load_config(EXPERIMENTS[name].config, CONFIGS / f"{name}.yaml")
    assert config != EXPERIMENTS[name].config()  # a config states only what differs from the defaults


def test_overrides_follow_the_file_and_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text("steps: 50\nlr: 0.1\n")
    config = load_config(ToyConfig, path, ["--steps", "7", "--hidden-size=3"], preset={"lr": 0.2, "steps": 9})
    assert (config.steps, config.lr, config.hidden_size) == (7, 0.2, 3)


def test_values_are_converted_to_the_field_types() -> None:
    assert parse_overrides(["--scales", "0.5,2", "--init=default"]) == {"scales": "0.5,2", "init": "default"}
    config = load_config(GradFlowConfig, None, ["--scales", "0.5,2", "--seed", "3", "--clip", "1e-1"])
    assert config.scales == (0.5, 2.0) and config.seed == 3 and config.clip == 0.1
    assert coerce(tuple[str, ...], ["a", "b"], "k") == ("a", "b")
    with pytest.raises(ConfigError, match="key 'seed' must be int, got 'x'"):
        load_config(GradFlowConfig, None, ["--seed", "x"])
    with pytest.raises(ConfigError, match="override --seed has no value"):
        parse_overrides(["--seed"])


def test_cli_runs_an_experiment_and_writes_its_outputs(tmp_path: Path, capsys) -> None:
    results = main(["toy", "--config", str(CONFIGS / "toy.yaml"), "--out", str(tmp_path), "--max_len", "5",
                    "--steps", "20", "--test-sequences", "10"])
    assert results["config"]["test_len"] == 64 and results["config"]["steps"] == 20
    assert json.loads((tmp_path / "results.json").read_text())["hand_built"]["sequences"] == 62
    assert (tmp_path / "toy.png").exists()
    out = capsys.readouterr().out
    assert "hand-built ReLU RNN" in out and str(tmp_path) in out


def test_quick_preset_is_applied(tmp_path: Path) -> None:
    results = main(["tasks", "--quick", "--out", str(tmp_path), "--steps", "3", "--test_sequences", "10"])
    assert results["config"]["cells"] == ["rnn_tanh", "gru"] and results["config"]["steps"] == 3


def test_top_level_command_dispatches_to_the_lab(tmp_path: Path) -> None:
    from captioning.cli.main import main as captioning_main

    captioning_main(["lab", "gradflow", "--out", str(tmp_path), "--cells", "gru", "--scales", "1", "--seq_len", "3",
                     "--input_scales", "1", "--train_steps", "2", "--hidden_size", "4"])
    assert (tmp_path / "gradflow.png").exists()


@pytest.mark.parametrize("argv,message", [
    (["nope"], "unknown experiment 'nope'; choose one of toy, charlm"),
    (["toy", "--stepz", "3"], "unknown key(s) 'stepz' for ToyConfig; valid keys: max_len"),
    (["toy", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["toy", "--steps", "many"], "key 'steps' must be int, got 'many'"),
    (["toy", "--cell", "lstn"], "unknown cell 'lstn'"),
    (["charlm", "--corpus", "no_such_book.txt"], "corpus 'no_such_book.txt'"),
    (["charlm", "--variants", "depth=3"], "variant 'depth=3': unknown key(s) 'depth'"),
    (["toy", "steps=3"], "expected --key value, got 'steps=3'"),
])
def test_bad_input_gets_a_clear_error(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_yaml_names_the_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- steps\n- 3\n")
    with pytest.raises(SystemExit):
        main(["toy", "--config", str(path)])
    assert "bad.yaml: a config must be a mapping" in capsys.readouterr().err
