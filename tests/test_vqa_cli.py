"""VQA models and commands: fusions, `captioning vqa fit/test/predict`, `captioning vqa-evaluate`, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from captioning.cli.main import main as captioning_main
from captioning.data.vqa_files import read_results
from captioning.models import SmallCNN
from captioning.models.vqa import AttentionFusion, GroundedFusion, ProductFusion, QuestionEncoder, build_vqa_model
from captioning.cli.vqa import evaluate_files, vqa_cli_main
from conftest import last_checkpoint, shapes_overrides
from vqa_helpers import assert_reloads_identically

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.mark.parametrize("fusion", [ProductFusion, AttentionFusion])
def test_model_answers_every_question_of_each_image(fusion) -> None:
    encoder = SmallCNN(channels=(8, 16), out_dim=32, grid_size=2)
    model = build_vqa_model(encoder, lambda v: QuestionEncoder(v, 8, 16), lambda q, v, g: fusion(q, v, g, 24),
                            vocab_size=10, num_answers=5, image_size=32, hidden_dim=12).eval()
    tokens = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 7, 8, 9, 2]])  # (Q=3, T=5)
    lengths, owner = torch.tensor([4, 3, 5]), torch.tensor([0, 0, 1])
    logits = model(torch.rand(2, 3, 32, 32), tokens, lengths, owner)
    assert logits.shape == (3, 5)
    if fusion is AttentionFusion:
        weights = model.fusion.last_weights  # (Q, N): a distribution over the 2×2 grid
        assert weights.shape == (3, 4) and torch.allclose(weights.sum(-1), torch.ones(3))


def test_attention_fusion_glimpses_coordinates_and_counts() -> None:
    fusion = AttentionFusion(6, 0, 5, fused_dim=7, attention_dim=4, glimpses=3, coordinates=True, counts=True)
    q, grid = torch.randn(2, 6), torch.randn(2, 4, 5)  # (Q, Dq), (Q, N=2×2, Dg)
    assert fusion(q, None, grid).shape == (2, 7)
    weights = fusion.last_weights  # (Q, K, N): one distribution per glimpse
    assert weights.shape == (2, 3, 4) and torch.allclose(weights.sum(-1), torch.ones(2, 3))
    assert fusion.z_proj.in_features == 3 * (5 + 2 + 1)  # glimpses × (feature + x, y + soft count)
    feats = fusion.features(grid)  # (Q, N, Dg + 2); positions row-major as the encoder flattens (h, w)
    assert torch.equal(feats[0, :, 5:], torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]))
    assert torch.allclose(feats[:, :, :5].pow(2).mean(-1), torch.ones(2, 4))  # unit mean square
    with pytest.raises(ValueError, match="square grid"):
        fusion(q, None, torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="glimpses"):
        AttentionFusion(6, 0, 5, glimpses=0)


def test_attention_fusion_counts_grow_with_matching_positions() -> None:
    fusion = AttentionFusion(2, 0, 3, fused_dim=4, attention_dim=4, counts=True)
    with torch.no_grad():  # score = sum of the grid feature's first component: positions "matching" score high
        fusion.g_att.weight.zero_(), fusion.g_att.bias.zero_(), fusion.q_att.weight.zero_()
        fusion.q_att.bias.zero_(), fusion.g_att.weight[0, 0].fill_(1.0), fusion.score.weight.zero_()
        fusion.score.weight[0, 0].fill_(20.0), fusion.score.bias.fill_(-10.0)
        seen = []
        fusion.z_proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0][:, -1]))
        one, three = torch.full((1, 4, 3), -1.0), torch.full((1, 4, 3), -1.0)
        one[0, 0, 0], three[0, :3, 0] = 1.0, 1.0
        fusion(torch.zeros(2, 2), None, torch.cat([one, three]))
    assert (seen[0] * 2).round().tolist() == [1.0, 3.0]  # soft count of high-scoring positions, / sqrt(N = 4)


def test_question_encoder_ignores_padding() -> None:
    enc = QuestionEncoder(10, 8, 16, cell="gru").eval()
    short = enc(torch.tensor([[1, 4, 2]]), torch.tensor([3]))
    padded = enc(torch.tensor([[1, 4, 2, 0, 0, 0]]), torch.tensor([3]))
    assert torch.allclose(short, padded)


@pytest.fixture(scope="module")
def fitted(tiny_shapes: Path, tmp_path_factory):
    """Two epochs of configs/vqa/shapes.yaml on a copy of the tiny scenes."""
    import shutil

    root = tmp_path_factory.mktemp("vqa_fit") / "shapes"
    shutil.copytree(tiny_shapes, root)
    out = root.parent / "run"
    cli = vqa_cli_main(["fit", "--config", str(REPO / "configs/vqa/shapes.yaml"), *shapes_overrides(root),
                        f"--trainer.default_root_dir={out}", "--trainer.max_epochs=2", *QUIET])
    return cli, root, out


def test_fit_logs_official_accuracy_and_saves_vocabularies(fitted) -> None:
    cli, _, _ = fitted
    logged = cli.trainer.logged_metrics
    for key in ("train/loss", "val/accuracy", "val/accuracy_yes_no", "val/accuracy_number", "val/accuracy_other"):
        assert key in logged and torch.isfinite(logged[key])
    assert 0.0 <= float(logged["val/accuracy"]) <= 100.0
    ckpt = torch.load(last_checkpoint(cli.trainer), weights_only=True)
    assert ckpt["vqa"]["answers"]["itos"] == cli.datamodule.answer_vocab.itos
    assert ckpt["vqa"]["vocab"]["itos"] == cli.datamodule.vocab.itos
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    assert 0.0 <= tested["test/accuracy"] <= 100.0 and "test/accuracy_yes_no" in tested


def test_load_vqa_rebuilds_the_trained_model_from_the_checkpoint_alone(fitted, tmp_path: Path) -> None:
    from captioning.inference.checkpoint import load_vqa

    cli, _, _ = fitted
    path = tmp_path / "moved.ckpt"  # a copy in another folder: nothing in it points back to the run
    path.write_bytes(Path(last_checkpoint(cli.trainer)).read_bytes())
    loaded = assert_reloads_identically(cli, path)
    assert loaded.answers.itos == cli.datamodule.answer_vocab.itos and loaded.vocab.itos == cli.datamodule.vocab.itos
    assert loaded.meta["fusion"]["name"] == "grounded" and loaded.meta["question_encoder"]["phrases"]
    ckpt = torch.load(path, weights_only=True)
    del ckpt["vqa"]["fusion"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="old.ckpt.*no field 'fusion'"):
        load_vqa(tmp_path / "old.ckpt")


def test_predict_writes_a_results_file_that_vqa_evaluate_scores(fitted, tmp_path: Path, capsys) -> None:
    cli, root, out = fitted
    ckpt = last_checkpoint(cli.trainer)
    vqa_cli_main(["predict", "--config", str(REPO / "configs/vqa/shapes.yaml"), *shapes_overrides(root),
                  f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={ckpt}", *QUIET])
    results = tmp_path / "vqa_results.json"  # the config's AnswerWriter, under default_root_dir
    questions = root / "vqa/v2_OpenEnded_shapes_test_questions.json"
    annotations = root / "vqa/v2_shapes_test_annotations.json"
    test_ids = [q["question_id"] for q in json.loads(questions.read_text())["questions"]]
    assert set(read_results(results, test_ids)) == set(test_ids)
    metrics = tmp_path / "metrics.json"
    captioning_main(["vqa-evaluate", "--questions", str(questions), "--annotations", str(annotations),
                     "--results", str(results), "--output", str(metrics)])
    assert "Overall Accuracy is:" in capsys.readouterr().out
    written = json.loads(metrics.read_text())
    assert set(written) == {"overall", "perAnswerType", "perQuestionType", "per_question"}
    assert written["overall"] == evaluate_files(questions, annotations, results)["overall"]
    assert len(written["per_question"]) == len(test_ids)


def test_vqa_evaluate_reports_bad_results_without_writing(fitted, tmp_path: Path, capsys) -> None:
    _, root, _ = fitted
    results = tmp_path / "r.json"
    results.write_text(json.dumps([{"question_id": 1, "answer": "yes"}]))
    with pytest.raises(SystemExit) as exit_info:
        captioning_main(["vqa-evaluate", "--questions", str(root / "vqa/v2_OpenEnded_shapes_val_questions.json"),
                         "--annotations", str(root / "vqa/v2_shapes_val_annotations.json"),
                         "--results", str(results), "--output", str(tmp_path / "m.json")])
    assert exit_info.value.code == 2
    assert "not in the annotations, e.g. [1]" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("layer, fusion", [("product", ProductFusion), ("attention", AttentionFusion)])
def test_product_and_attention_layers_smoke_fit(fitted, tmp_path: Path, layer: str, fusion: type) -> None:
    _, root, _ = fitted
    assert isinstance(fitted[0].model.model.fusion, GroundedFusion)  # the default
    cli = vqa_cli_main(["fit", "--config", str(REPO / "configs/vqa/shapes.yaml"),
                        "--config", str(REPO / f"configs/vqa/{layer}.yaml"), *shapes_overrides(root),
                        f"--trainer.default_root_dir={tmp_path}", "--trainer.fast_dev_run=1", *QUIET])
    model = cli.model.model
    assert isinstance(model.fusion, fusion) and not model.question_encoder.config["phrases"]
    assert model.question_encoder.config["hidden_dim"] == 256  # the rest of shapes.yaml's encoder is kept
    if fusion is AttentionFusion:  # the previous default, as it was
        assert model.fusion.config["glimpses"] == 2 and model.fusion.coordinates and model.fusion.counts
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])


def _tiny_vqav2(root: Path) -> None:
    """Three COCO-named images and VQA v2 files for train2014/val2014 (questions only for test-dev2015)."""
    for split, ids in (("train2014", [1, 2]), ("val2014", [3]), ("test2015", [4])):
        (root / split).mkdir(parents=True)
        for i in ids:
            Image.new("RGB", (40, 30), (50 * i, 20, 90)).save(root / split / f"COCO_{split}_{i:012d}.jpg")
    for split, ids in (("train2014", [1, 2]), ("val2014", [3]), ("test-dev2015", [4])):
        qs = [{"image_id": i, "question": "what color is it?", "question_id": i * 10} for i in ids]
        (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps({"questions": qs}))
        anns = [{"question_id": i * 10, "image_id": i, "question_type": "what color is", "answer_type": "other",
                 "answers": [{"answer": "red" if i % 2 else "blue", "answer_id": k + 1} for k in range(10)]}
                for i in ids]
        if split != "test-dev2015":
            (root / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps({"annotations": anns}))


def test_vqav2_config_smoke_fit_and_test_dev_submission(tmp_path: Path) -> None:
    data = tmp_path / "vqav2"
    _tiny_vqav2(data)
    args = ["--config", str(REPO / "configs/vqa/vqav2.yaml"), f"--data.init_args.root={data}",
            "--data.init_args.min_answer_count=1", "--data.init_args.image_size=64",
            "--data.init_args.num_workers=0", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    cli = vqa_cli_main(["fit", *args, "--trainer.fast_dev_run=1"])
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    assert not any(p.requires_grad for p in cli.model.model.encoder.parameters())  # frozen EfficientNet-Lite0
    cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    written = json.loads((tmp_path / "vqa_OpenEnded_mscoco_test-dev2015_results.json").read_text())
    assert [r["question_id"] for r in written] == [40] and written[0]["answer"] in {"red", "blue"}


def test_vqa_help_names_the_command(capsys) -> None:
    with pytest.raises(SystemExit):
        captioning_main(["vqa", "--help"])
    assert capsys.readouterr().out.startswith("usage: captioning vqa ")
