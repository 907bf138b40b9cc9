"""Self-critical training: differentiable sampling, CIDEr-D rewards with cached training statistics, and
an SCST fine-tuning run from a cross-entropy checkpoint, from config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captioning.cli.fit import cli_main
from captioning.models.decoding import sample, sample_with_grad
from captioning.training.scst import training_statistics
from captioning.metrics import CiderDStatistics, cider_d
from captioning.metrics.reward import cider_d_scores
from captioning.models import RNNDecoder
from conftest import last_checkpoint, shapes_overrides

REPO = Path(__file__).resolve().parents[1]
REFS = [["a red circle", "one red circle"], ["two blue squares", "a blue square and a blue square"]]


def test_sample_with_grad_matches_sample_and_carries_the_graph() -> None:
    decoder, v = RNNDecoder(12, 8, 8, 16), torch.randn(3, 8)
    plain = sample(decoder, v, 6, generator=torch.Generator().manual_seed(1))
    taped = sample_with_grad(decoder, v, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain.tokens, taped.tokens)
    torch.testing.assert_close(taped.token_log_probs.sum(1), taped.scores)
    torch.testing.assert_close(taped.scores.detach(), plain.scores)
    assert (taped.token_log_probs[taped.tokens == 0] == 0).all()  # nothing after <END>
    taped.scores.sum().backward()
    assert decoder.out.weight.grad is not None and decoder.out.weight.grad.abs().sum() > 0


def test_rewards_are_cider_d_per_caption_with_fixed_statistics() -> None:
    stats = CiderDStatistics.from_references(REFS)
    scores = cider_d_scores(["a red circle", "a blue circle"], REFS, stats)
    for i, caption in enumerate(["a red circle", "a blue circle"]):
        assert scores[i] == pytest.approx(cider_d({0: REFS[i]}, {0: caption}, stats=stats)[1][0])
    assert scores[0] > scores[1] > 0
    with pytest.raises(ValueError, match="2 captions but 1 reference lists"):
        cider_d_scores(["a", "b"], REFS[:1], stats)


def test_training_statistics_are_cached_per_training_set(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "df.json"
    first = training_statistics(REFS, cache)
    monkeypatch.setattr(CiderDStatistics, "from_references", classmethod(lambda *a, **k: 1 / 0))
    again = training_statistics(REFS, cache)  # read back, not recomputed
    assert again == first
    with pytest.raises(ZeroDivisionError):  # another training set: recomputed
        training_statistics(REFS[:1], cache)


def test_statistics_leave_out_single_image_ngrams_and_cider_d_is_unchanged() -> None:
    import random

    from captioning.metrics.text import ngram_counts

    rng = random.Random(0)
    words = ["a", "red", "blue", "circle", "square", "and", "left", "of"] + [f"rare{i}" for i in range(40)]
    refs = {i: [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(3)] for i in range(30)}
    hyps = {i: " ".join(rng.choices(words, k=rng.randint(3, 9))) for i in refs}
    full: dict = {}
    for group in refs.values():
        for gram in {g for ref in group for g in ngram_counts(ref.split(), 4)}:
            full[gram] = full.get(gram, 0) + 1
    stats = CiderDStatistics.from_references(refs)
    assert stats.document_frequency == {g: c for g, c in full.items() if c > 1}
    assert 1 in full.values()  # the test's corpus does have single-image n-grams to leave out
    unpruned = CiderDStatistics(full, stats.ref_len, 4)
    assert cider_d(refs, hyps, stats=stats) == cider_d(refs, hyps, stats=unpruned)  # bit for bit


def test_statistics_cache_round_trips_any_word(tmp_path: Path) -> None:
    refs = [['caf\u00e9 "quoted" back\\slash', 'caf\u00e9 "quoted" back\\slash x']] * 2
    written = training_statistics(refs, tmp_path / "df.json")
    assert training_statistics(refs, tmp_path / "df.json") == written
    assert ("caf\u00e9", '"quoted"', "back\\slash") in written.document_frequency


def test_scst_fine_tunes_a_cross_entropy_checkpoint_from_config(tiny_shapes: Path, tmp_path: Path) -> None:
    common = [*shapes_overrides(tiny_shapes), "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false", "--trainer.log_every_n_steps=1"]
    ce = cli_main(["fit", "--config", str(REPO / "configs/shapes.yaml"), *common,
                   f"--trainer.default_root_dir={tmp_path / 'ce'}"])
    ckpt = last_checkpoint(ce.trainer)
    scst = cli_main(["--config", str(REPO / "configs/shapes.yaml"), "--config", str(REPO / "configs/scst.yaml"),
                     *common, f"--trainer.default_root_dir={tmp_path / 'scst'}", f"--model.init_weights={ckpt}",
                     "--model.objective.init_args.num_samples=2"], run=False)
    start = {k: t.clone() for k, t in scst.model.state_dict().items()}
    for name, weight in ce.model.state_dict().items():
        assert torch.equal(start[name], weight), name  # starts from the cross-entropy weights
    scst.trainer.fit(scst.model, datamodule=scst.datamodule)
    logged = scst.trainer.logged_metrics
    assert {"train/scst_loss", "train/sample_cider", "train/greedy_cider", "val/CIDEr"} <= set(logged)
    assert not torch.equal(scst.model.state_dict()["captioner.decoder.out.weight"],
                           start["captioner.decoder.out.weight"])
    assert torch.equal(scst.model.state_dict()["captioner.encoder.fc.1.weight"],
                       start["captioner.encoder.fc.1.weight"])  # by default only the decoder is fine-tuned
    assert (tmp_path / "scst" / "cider_d_train_df.json").is_file()


def test_scheduled_sampling_equals_teacher_forcing_at_zero_and_feeds_samples_above() -> None:
    from captioning.models.decoding import scheduled_sampling
    from captioning.training.objectives import ScheduledSampling

    decoder, v = RNNDecoder(12, 8, 8, 16), torch.randn(3, 8)
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 9, 9, 4, 2]])  # <START>=1 … <END>=2
    torch.testing.assert_close(scheduled_sampling(decoder, v, tokens, 0.0), decoder(v, tokens))
    mixed = scheduled_sampling(decoder, v, tokens, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed[:, 0], decoder(v, tokens)[:, 0])  # the first input is always <START>
    assert not torch.allclose(mixed, decoder(v, tokens))
    schedule = ScheduledSampling(max_prob=0.25, start_step=10, ramp_steps=100)
    assert [schedule.probability(s) for s in (0, 10, 60, 110, 500)] == [0.0, 0.0, 0.125, 0.25, 0.25]
