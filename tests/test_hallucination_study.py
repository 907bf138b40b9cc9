"""scripts/hallucination_study.py --quick: an attention arm trained with cross-entropy, then SCST from its
checkpoint, evaluated with CHAIR and binding errors, summarized over seeds, then the co-occurrence-bias arm for
the best model; a finished run (in its folder or the study's record) is not repeated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from captioning.core.runtime import fast_precision
from conftest import load_script


def test_quick_study_runs_both_objectives_and_resumes(tmp_path: Path) -> None:
    study = load_script("hallucination_study.py")
    out = tmp_path / "study"
    table = study.main(["--quick", "--out", str(out), "--seeds", "0", "--models", "updown"])
    assert set(table) == {"updown | cross-entropy", "updown | CE then SCST"}
    for row in table.values():
        assert row["seeds"] == 1 and 0.0 <= row["CHAIRs"]["mean"] <= 1.0 and row["binding_errors"] is not None
    ce = json.loads((out / "updown/ce-seed0/metrics_test.json").read_text())
    scst_config = next((out / "updown/scst-seed0/lightning_logs").glob("version_*/config.yaml")).read_text()
    assert ce["checkpoint"] in scst_config and "SelfCritical" in scst_config  # SCST starts from the CE weights
    doc = (out / "hallucination.md").read_text()
    assert "| updown | CE then SCST | 1 |" in doc
    bias = json.loads((out / "study.json").read_text())["bias"]  # the best model (the only one here) on biased data
    assert set(bias) == {"updown"} and set(bias["updown"]) == {"natural", "cooccur"}
    assert "| updown | cooccur |" in doc and "| updown | natural |" in doc
    stamp = (out / "updown/ce-seed0/metrics_test.json").stat().st_mtime
    study.main(["--quick", "--out", str(out), "--seeds", "0", "--models", "updown"])  # resumes: nothing rerun
    assert (out / "updown/ce-seed0/metrics_test.json").stat().st_mtime == stamp
    # --table-only runs nothing: an unfinished model (att2in) and seed (1) are left out, the bias results are read
    table = study.main(["--quick", "--out", str(out), "--seeds", "0", "1", "--models", "updown", "att2in",
                        "--table-only"])
    assert set(table) == {"updown | cross-entropy", "updown | CE then SCST"} and not (out / "att2in").exists()
    assert not (out / "updown/ce-seed1").exists() and table["updown | cross-entropy"]["seeds"] == 1
    assert set(json.loads((out / "study.json").read_text())["bias"]) == {"updown"}
    # the record keeps every finished arm with its machine: with the run folders gone (another machine), the
    # table is the same and nothing is rerun
    record = json.loads((out / "record.json").read_text())["arms"]
    assert {(a["model"], a["objective"], a["seed"]) for a in record} == {("updown", "cross-entropy", 0),
                                                                         ("updown", "CE then SCST", 0)}
    assert record[0]["Bleu_4"] == ce["Bleu_4"] and "torch threads" in record[0]["machine"]
    assert record[0]["machine"].endswith(fast_precision())  # and the precision it trained in
    assert set(json.loads((out / "record.json").read_text())["bias"]["updown"]["arms"]) == {"natural", "cooccur"}
    shutil.rmtree(out / "updown")
    shutil.rmtree(out / "bias")
    again = study.main(["--quick", "--out", str(out), "--seeds", "0", "--models", "updown", "--no-bias"])
    assert not (out / "updown").exists()
    assert set(json.loads((out / "study.json").read_text())["bias"]) == {"updown"}  # the bias rows, from the record
    assert again["updown | CE then SCST"]["Bleu_4"] == table["updown | CE then SCST"]["Bleu_4"]
