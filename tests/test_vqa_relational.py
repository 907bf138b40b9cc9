"""The relational fusion (attention steps led by the question's words), the word-level question encoder and
configs/vqa/relational.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from captioning.data.vocab import AnswerVocab, Vocabulary
from captioning.inference.checkpoint import load_vqa, save_vqa
from captioning.models import SmallCNN
from captioning.models.relational import RelationalFusion
from captioning.models.vqa import FUSIONS, QuestionEncoder, QuestionWords, VQAModel, build_vqa_model
from vqa_helpers import assert_reloads_identically, fit_vqa_layer, left_right_scenes, mirrored


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


def _words(enc: QuestionEncoder, tokens: list[list[int]]) -> tuple[torch.Tensor, QuestionWords]:
    lengths = torch.tensor([sum(t > 0 for t in row) for row in tokens])
    return enc(torch.tensor(tokens), lengths, return_words=True)


def test_the_question_conditions_each_step() -> None:
    fusion, enc = _fusion(steps=3), QuestionEncoder(10, 4, 6, phrases=True).eval()
    grid = torch.randn(1, 9, 5).expand(2, -1, -1)  # (Q, N = 3×3, Dg): one scene, asked twice
    with torch.no_grad():
        q, words = _words(enc, [[1, 4, 5, 2], [1, 4, 6, 2]])  # the questions differ in one word
        out = fusion(q, None, grid, words=words)
        steps = fusion.last_weights  # (Q, K, N)
        assert out.shape == (2, 7) and steps.shape == (2, 3, 9)
        assert torch.allclose(steps.sum(-1), torch.ones(2, 3))
        assert not torch.allclose(out[0], out[1]) and not torch.allclose(steps[0], steps[1])
        assert not torch.allclose(steps[0, 0], steps[0, 1])  # each step forms its own query
        q_padded, padded_words = _words(enc, [[1, 4, 5, 2, 0, 0]])
        padded = fusion(q_padded, None, grid[:1], words=padded_words)
    torch.testing.assert_close(padded, out[:1])  # padding is not read
    assert fusion.last_word_weights[0, :, 4:].abs().max() == 0  # (K, T): no weight on padding


def test_phrases_or_states_form_the_queries() -> None:
    grid = torch.randn(2, 4, 5)  # (Q, N = 2×2, Dg)
    enc = QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = _words(enc, [[1, 4, 5, 2], [1, 6, 2, 0]])
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
    q, words = _words(QuestionEncoder(10, 4, 6, phrases=True).eval(), [[1, 4, 5, 2], [1, 6, 2, 0]])
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
    q, words = _words(QuestionEncoder(10, 4, 6, phrases=True), [[1, 4, 2]])
    with pytest.raises(ValueError, match="square grid"):
        fusion(q, None, torch.randn(1, 5, 5), words=words)
    with pytest.raises(ValueError, match="word by word"):
        fusion(q, None, torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match="steps"):
        RelationalFusion(6, 0, 5, steps=1)


class _GridEncoder(nn.Module):
    """Passes toy grids through as the image encoder's output: ``images`` (B, N, D) → (mean, grid)."""

    out_dim = 3

    def forward(self, images: torch.Tensor, return_grid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return images.mean(1), images


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
    model = VQAModel(_GridEncoder(), QuestionEncoder(5, 8, 16, phrases=True),
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
    vocab = Vocabulary(["is", "the", "red", "circle", "left", "of", "blue", "square"])
    answers = AnswerVocab(["yes", "no"])
    model = build_vqa_model(SmallCNN(channels=(8, 16), out_dim=16, grid_size=4),
                            lambda v: QuestionEncoder(v, 8, 12, phrases=True),
                            lambda q, v, g: RelationalFusion(q, v, g, fused_dim=10, attention_dim=6, steps=3),
                            len(vocab), len(answers), image_size=32, hidden_dim=12, dropout=0.0).eval()
    loaded = load_vqa(save_vqa(tmp_path / "relational.ckpt", model, vocab, answers, 32))
    assert loaded.meta["fusion"]["name"] == "relational" and loaded.meta["fusion"]["steps"] == 3
    assert loaded.meta["question_encoder"]["phrases"] is True
    tokens = torch.tensor([vocab.encode("is the red circle left of the blue square"), vocab.encode("is the red circle")
                           + [0] * 5])  # (Q=2, T)
    args = torch.rand(2, 3, 32, 32), tokens, torch.tensor([11, 6]), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(*args), model(*args), rtol=0, atol=0)


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
