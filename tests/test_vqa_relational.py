"""The relational fusion (attention steps led by the question's words), the word-level question encoder and
configs/vqa/relational.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from captioning.models.relational import RelationalFusion
from captioning.models.vqa import FUSIONS, QuestionEncoder, VQAModel
from vqa_helpers import (GridEncoder, ask_twice_then_padded, assert_needs_square_grid_and_words,
                         assert_reloads_identically, assert_round_trip, fit_vqa_layer, left_right_scenes, mirrored,
                         question_words)


def test_question_encoder_returns_states_phrases_and_mask() -> None:
    enc = QuestionEncoder(10, 8, 16, phrases=True).eval()
    tokens, lengths = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0]]), torch.tensor([4, 3])  # (Q=2, T=5)
    q, words = enc(tokens, lengths, return_words=True)
    torch.testing.assert_close(q, enc(tokens, lengths))  # the question vector is unchanged
    assert words.states.shape == words.phrases.shape == (2, 5, 16)
    assert words.mask.tolist() == [[True] * 4 + [False], [True] * 3 + [False] * 2]
    torch.testing.assert_close(words.states[torch.arange(2), lengths - 1], q)
    changed = tokens.clone()
    changed[0, 1] = 7  # the word at t = 1: phrases at t = 1, 2 (the word and the next) change, t = 3 does not
    moved = enc(changed, lengths, return_words=True)[1].phrases
    assert not torch.allclose(moved[0, 1:3], words.phrases[0, 1:3])
    torch.testing.assert_close(moved[0, 3], words.phrases[0, 3])
    assert QuestionEncoder(10, 8, 16).eval()(tokens, lengths, return_words=True)[1].phrases is None


def _fusion(**kwargs) -> RelationalFusion:
    return RelationalFusion(6, 0, 5, fused_dim=7, attention_dim=4, **kwargs).eval()



def test_the_question_conditions_each_step() -> None:
    fusion, enc = _fusion(steps=3), QuestionEncoder(10, 4, 6, phrases=True).eval()
    out, padded, (steps, _), (_, word_weights) = ask_twice_then_padded(
        fusion, enc, lambda f: (f.last_weights, f.last_word_weights))
    assert out.shape == (2, 7) and steps.shape == (2, 3, 9)  # (Q, K, N)
    assert torch.allclose(steps.sum(-1), torch.ones(2, 3))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(steps[0], steps[1])
    assert not torch.allclose(steps[0, 0], steps[0, 1])  # each step forms its own query
    torch.testing.assert_close(padded, out[:1])  # padding is not read
    assert word_weights[0, :, 4:].abs().max() == 0  # (K, T): no weight on padding


def test_phrases_or_states_form_the_queries() -> None:
    grid = torch.randn(2, 4, 5)  # (Q, N = 2×2, Dg)
    enc = QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = question_words(enc, [[1, 4, 5, 2], [1, 6, 2, 0]])
    with torch.no_grad():
        from_states = _fusion(phrases=False)(q, None, grid, words=words._replace(phrases=None))
        torch.manual_seed(0)
        with_phrases = _fusion()(q, None, grid, words=words)
        torch.manual_seed(0)
        scrambled = _fusion()(q, None, grid, words=words._replace(phrases=torch.randn_like(words.phrases)))
    assert from_states.shape == (2, 7) and not torch.allclose(with_phrases, scrambled)
    with pytest.raises(ValueError, match="phrases: true"):
        _fusion()(q, None, grid, words=words._replace(phrases=None))


def test_question_query_adds_the_whole_question_to_every_step() -> None:
    grid = torch.randn(2, 4, 5)  # (Q, N = 2×2, Dg)
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True).eval(), [[1, 4, 5, 2], [1, 6, 2, 0]])
    torch.manual_seed(0)
    fusion = _fusion(question_query=True)
    with torch.no_grad():
        fusion(q, None, grid, words=words)
        led = fusion.last_weights  # (Q, K, N)
        fusion.q_att.weight.zero_()  # W_qa = 0: the plain relational fusion, same weights otherwise
        fusion(q, None, grid, words=words)
        plain = fusion.last_weights
    torch.manual_seed(0)
    reference = _fusion()
    reference.load_state_dict({k: v for k, v in fusion.state_dict().items() if not k.startswith("q_att")})
    with torch.no_grad():
        reference(q, None, grid, words=words)
    torch.testing.assert_close(plain, reference.last_weights)
    assert not torch.allclose(led, plain)
    assert fusion.config["question_query"] and _fusion().q_att is None


def test_relational_fusion_is_registered_and_checks_its_input() -> None:
    fusion = FUSIONS.build({"name": "relational", "question_dim": 6, "image_dim": 0, "grid_dim": 5, "steps": 2})
    assert isinstance(fusion, RelationalFusion) and fusion.needs_words and fusion.config["steps"] == 2
    assert_needs_square_grid_and_words(fusion)
    with pytest.raises(ValueError, match="steps"):
        RelationalFusion(6, 0, 5, steps=1)


def _ask(model: VQAModel, grid: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Logits of "is A to the <side> of B?", tokens ``<START> left|right <END>`` (ids 1, 3|4, 2)."""
    n = grid.size(0)
    tokens = torch.stack([torch.ones(n, dtype=torch.long), 3 + side, torch.full((n,), 2)], dim=1)  # (n, 3)
    return model(grid, tokens, torch.full((n,), 3), torch.arange(n))


def test_trained_relation_answers_flip_when_the_scene_is_mirrored(one_thread) -> None:
    """A tiny VQA model (LSTM words → relational fusion → classifier) learns "is A left/right of B?" on 4×4
    grids; its answers on held-out scenes flip when the scene is mirrored left-right. Both steps read the same
    single word, so telling A from B rests on each step's own query projection."""
    g = torch.Generator().manual_seed(0)
    model = VQAModel(GridEncoder(), QuestionEncoder(5, 8, 16, phrases=True),
                     RelationalFusion(16, 3, 3, fused_dim=16, attention_dim=16), 2, 16, 0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        grid, left = left_right_scenes(64, g, background=True)
        side = torch.randint(0, 2, (64,), generator=g)  # 0: "left of", 1: "right of"
        loss = nn.functional.cross_entropy(_ask(model, grid, side), left ^ side)  # yes (1) iff the side is right
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    grid, left = left_right_scenes(200, g, background=True)
    ask_left = torch.zeros(200, dtype=torch.long)
    with torch.no_grad():
        said = _ask(model, grid, ask_left).argmax(-1)
        said_mirrored = _ask(model, mirrored(grid), ask_left).argmax(-1)
    assert (said == left).float().mean() > 0.95
    assert (said_mirrored != said).float().mean() > 0.95  # left of became right of


def test_save_vqa_load_vqa_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    fusion = lambda q, v, g: RelationalFusion(q, v, g, fused_dim=10, attention_dim=6, steps=3)  # noqa: E731
    meta = assert_round_trip(tmp_path, fusion, "relational")
    assert meta["steps"] == 3


def test_relational_config_smoke_fits_one_batch(tiny_shapes: Path, tmp_path: Path) -> None:
    cli = fit_vqa_layer("configs/vqa/relational.yaml", tiny_shapes, tmp_path)
    model = cli.model.model
    assert isinstance(model.fusion, RelationalFusion) and model.fusion.config["steps"] == 3
    assert model.question_encoder.config["phrases"] is True  # the layer changes one option of the encoder ...
    assert model.question_encoder.config["hidden_dim"] == 256  # ... and keeps shapes.yaml's others
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    path = tmp_path / "relational.ckpt"
    cli.trainer.save_checkpoint(path)
    assert_reloads_identically(cli, path)
