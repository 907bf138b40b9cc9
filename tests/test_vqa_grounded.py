"""The word-grounded fusion (glimpses + every phrase grounded, compared by signed word gates) and
the default configs/vqa/shapes.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from captioning.models.film import coordinates
from captioning.models.grounded import PhrasePointers, WordGrounding
from captioning.models.vqa import AttentionFusion, FUSIONS, GroundedFusion, QuestionEncoder, QuestionWords, VQAModel
from vqa_helpers import (SIDE, GridEncoder, ask_twice_then_padded, assert_needs_square_grid_and_words,
                         assert_offset_of_a_from_b, assert_reloads_identically, assert_round_trip, fit_vqa_layer,
                         left_right_scenes, mirrored, question_words)


def _fusion(**kwargs) -> GroundedFusion:
    return GroundedFusion(6, 0, 5, fused_dim=7, attention_dim=4, word_attention_dim=4, **kwargs).eval()


def test_every_phrase_grounds_itself_and_padding_is_not_read() -> None:
    fusion, enc = _fusion(heads=3), QuestionEncoder(10, 4, 6, phrases=True).eval()
    out, padded, (grounding, glimpses, _), (_, _, padded_gates) = ask_twice_then_padded(
        fusion, enc, lambda f: (f.words.last_weights, f.last_weights, f.words.last_gates))
    assert out.shape == (2, 7) and grounding.shape == (2, 4, 9) and glimpses.shape == (2, 2, 9)  # (Q, T | K, N)
    torch.testing.assert_close(grounding.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(grounding[0, :2], grounding[1, :2])  # same phrases, same grounding ...
    assert not torch.allclose(grounding[0, 2:], grounding[1, 2:])  # ... a changed word grounds anew
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(padded, out[:1])  # padding is not read
    assert padded_gates[0, 4:].abs().max() == 0  # (T, K): no gate at padding


def test_without_glimpses_only_the_words_are_read() -> None:
    grid, enc = torch.randn(2, 4, 5), QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = question_words(enc, [[1, 4, 5, 2], [1, 6, 2, 0]])
    fusion = _fusion(glimpses=0, heads=2)
    with torch.no_grad():
        assert fusion(q, None, grid, words=words).shape == (2, 7)
    assert fusion.attention is None and fusion.last_weights is None and fusion.d_proj.in_features == 2 * (5 + 2 + 1)


def test_the_word_path_reads_the_grid_without_training_the_encoder() -> None:
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True).eval(), [[1, 4, 5, 2], [1, 6, 2, 0]])
    grads = {}
    for detach in (True, False):
        torch.manual_seed(0)
        fusion = _fusion(glimpses=0, heads=2, key_hidden=8, detach_grid=detach)
        nn.init.normal_(fusion.words.gate.weight)  # trained gates (they start at zero)
        grid = torch.randn(2, 4, 5, requires_grad=True)  # (Q, N = 2×2, Dg)
        fusion(q.detach(), None, grid, words=QuestionWords(*(t.detach() for t in words))).sum().backward()
        grads[detach] = grid.grad
    assert grads[True] is None and grads[False].abs().sum() > 0
    assert _fusion().words.gate.weight.abs().sum() == 0  # reading features, the gates start at zero ...
    assert _fusion(read_features=False).words.gate.weight.abs().sum() > 0  # ... reading coordinates, they do not
    assert isinstance(_fusion(key_hidden=8).words.key, nn.Sequential)  # an MLP computes the keys


def _constructed_grounding() -> WordGrounding:
    """Phrase channel 0 finds grid channel 0 (object A), channel 1 finds channel 1 (B); head 0's gate is
    state channel 0 (+1 on the first-named object, -1 on the second)."""
    ground = WordGrounding(word_dim=2, feat_dim=2 + 2, attention_dim=2, heads=1)
    with torch.no_grad():
        for p in ground.parameters():
            p.zero_()
        ground.query.weight.copy_(torch.eye(2) * 20.0)  # (A, H)
        ground.key.weight[:, :2].copy_(torch.eye(2) * 20.0)  # (A, D): the objects' channels, not the coordinates
        ground.gate.weight[0, 0] = 20.0  # tanh(20 h_0) = ±1
    return ground


def test_signed_gates_give_the_offset_of_the_two_named_objects_and_flip_when_mirrored() -> None:
    """A constructed case: "is A left of B?" and "is B left of A?" read x_A - x_B and x_B - x_A, and a mirrored
    scene negates both."""
    g = torch.Generator().manual_seed(0)
    grid, left = left_right_scenes(50, g)  # (n, 16, 2): A in channel 0, B in channel 1
    feats = torch.cat([grid, coordinates(SIDE).expand(50, -1, -1)], dim=-1)  # (n, N, 4)
    first_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # phrases of tokens "A", "B": (T=2, H)
    gates = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # states: +1 at the first-named object, -1 at the second
    words = QuestionWords(gates.expand(50, -1, -1), first_a.expand(50, -1, -1), torch.ones(50, 2, dtype=torch.bool))
    ground = _constructed_grounding()
    where = WordGrounding(word_dim=2, feat_dim=2 + 2, attention_dim=2, heads=1, read_features=False)
    where.load_state_dict(ground.state_dict())  # the same grounding, reading the coordinates alone
    with torch.no_grad():
        offset = ground(feats, words)[:, 2]  # (n,): the x part of d_0 = [features, x, y, count]
        torch.testing.assert_close(where(feats, words), ground(feats, words)[:, 2:])  # d_0 = [x, y, count]
        swapped = ground(feats, words._replace(phrases=first_a.flip(0).expand(50, -1, -1)))[:, 2]
        mirrored_feats = torch.cat([mirrored(grid), coordinates(SIDE).expand(50, -1, -1)], dim=-1)
        offset_mirrored = ground(mirrored_feats, words)[:, 2]
    assert_offset_of_a_from_b(grid, left, offset, swapped, offset_mirrored)



def _ask(model: VQAModel, grid: torch.Tensor, a_first: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Logits of "is X <side> of Y?" as tokens ``<START> X left|right Y <END>``: A is word 3, B word 4,
    left 5, right 6."""
    n = grid.size(0)
    first, second = 3 + (1 - a_first), 3 + a_first
    tokens = torch.stack([torch.ones(n, dtype=torch.long), first, 5 + side, second, torch.full((n,), 2)], 1)
    return model(grid, tokens, torch.full((n,), 5), torch.arange(n))  # (n, 2)


def test_trained_relation_answers_flip_when_the_scene_is_mirrored(one_thread) -> None:
    """A tiny VQA model (LSTM words → grounded fusion → classifier) learns "is X left/right of Y?" for named
    objects on 4×4 grids; its answers on held-out scenes flip when the scene is mirrored left-right."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = VQAModel(GridEncoder(), QuestionEncoder(7, 8, 16, phrases=True),
                     GroundedFusion(16, 3, 3, fused_dim=16, attention_dim=16, word_attention_dim=16), 2, 16, 0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        grid, left = left_right_scenes(64, g, background=True)
        a_first, side = torch.randint(0, 2, (2, 64), generator=g)  # side 0: "left of", 1: "right of"
        truth = (left ^ (1 - a_first)) ^ side  # yes (1) iff X is on that side of Y
        loss = nn.functional.cross_entropy(_ask(model, grid, a_first, side), truth)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    grid, left = left_right_scenes(200, g, background=True)
    a_first, side = torch.randint(0, 2, (2, 200), generator=g)
    with torch.no_grad():
        said = _ask(model, grid, a_first, side).argmax(-1)
        said_mirrored = _ask(model, mirrored(grid), a_first, side).argmax(-1)
    assert (said == (left ^ (1 - a_first)) ^ side).float().mean() > 0.95
    assert (said_mirrored != said).float().mean() > 0.95  # left of became right of


def test_each_glimpse_query_offset_moves_its_own_glimpse_only() -> None:
    attention = AttentionFusion(6, 0, 5, fused_dim=7, attention_dim=4, glimpses=2, coordinates=True, counts=True)
    feats, q = attention.features(torch.randn(3, 4, 5)), torch.randn(3, 6)  # (Q, N, D), (Q, H)
    offsets = torch.zeros(3, 2, 4)
    offsets[:, 0] = torch.randn(3, 4)  # glimpse 0 only
    with torch.no_grad():
        z, weights = attention.read(q, feats)
        z_zero, weights_zero = attention.read(q, feats, torch.zeros(3, 2, 4))
        _, moved = attention.read(q, feats, offsets)
    torch.testing.assert_close(z_zero, z)  # zero offsets: the glimpses as without
    torch.testing.assert_close(weights_zero, weights)
    torch.testing.assert_close(moved[:, 1], weights[:, 1])
    assert not torch.allclose(moved[:, 0], weights[:, 0])


def _question_share_of_attention(multiplicative: bool, seed: int) -> float:
    """At initialization, how much of the glimpse logits' spread over positions changes with the question: two
    random questions asked of one random 8×8 grid."""
    torch.manual_seed(seed)
    attention = AttentionFusion(64, 0, 32, fused_dim=16, attention_dim=64, glimpses=2, coordinates=True,
                                counts=True, multiplicative=multiplicative)
    feats, q = attention.features(torch.randn(1, 64, 32).expand(2, -1, -1)), torch.tanh(torch.randn(2, 64))
    with torch.no_grad():
        logits = attention.read(q, feats)[1].log()  # (Q, K, N)
    centred = logits - logits.mean(-1, keepdim=True)
    return ((centred[0] - centred[1]).pow(2).mean() / centred.pow(2).mean()).item()


def test_multiplicative_glimpses_depend_on_the_question_from_the_start() -> None:
    for seed in range(3):
        assert _question_share_of_attention(False, seed) < 0.3  # additive: nearly the same map for any question
        assert _question_share_of_attention(True, seed) > 1.0  # multiplicative: unrelated maps
    fusion = _fusion(multiplicative=True)
    assert fusion.attention.multiplicative and fusion.config["multiplicative"] is True
    keys, queries = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(fusion.attention.interact(keys, queries), torch.tanh(keys) * torch.tanh(queries))
    assert _fusion().attention.interact(keys, queries).equal(torch.tanh(keys + queries))  # the default: additive


def test_compared_glimpses_add_their_offset_gated_by_the_question_and_it_flips_when_mirrored() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion(6, 0, 3, fused_dim=7, attention_dim=4, glimpses=2, coordinates=True, compare=True)
    grid, a_left = left_right_scenes(8, torch.Generator().manual_seed(0), background=True)  # (n, 16, 3): A, B, empty
    with torch.no_grad():  # glimpse 1 on A (channel 0), glimpse 2 on B (channel 1)
        fusion.g_att.weight.zero_(), fusion.g_att.bias.zero_(), fusion.q_att.weight.zero_()
        fusion.g_att.weight[0, 0], fusion.g_att.weight[1, 1] = 1.0, 1.0
        fusion.score.weight.zero_(), fusion.score.bias.zero_()
        fusion.score.weight[0, 0], fusion.score.weight[1, 1] = 20.0, 20.0
        q = torch.randn(8, 6)
        feats = fusion.features(grid)
        fusion(q, None, grid)
        where = torch.bmm(fusion.last_weights, feats[..., -2:])  # (Q, K, 2)
        term = fusion.compare(q, where)  # (Q, F)
        gates = torch.tanh(fusion.compare_proj(q)).view(8, 2, 7)
        offset = where[:, 0] - where[:, 1]  # (Q, 2): A's position minus B's
        torch.testing.assert_close(term, offset[:, :1] * gates[:, 0] + offset[:, 1:] * gates[:, 1])
        assert ((offset[:, 0] < 0) == a_left.bool()).all()  # the x offset's sign says which is left
        fusion(q, None, mirrored(grid))
        flipped = fusion.compare(q, torch.bmm(fusion.last_weights, fusion.features(mirrored(grid))[..., -2:]))
    x_part = offset[:, :1] * gates[:, 0]  # mirrored: the x offset changes sign, the y offset stays
    torch.testing.assert_close(flipped, term - 2 * x_part, atol=1e-4, rtol=1e-4)
    assert fusion.compare_proj.out_features == 2 * 7 and fusion.config["compare"] is True
    for counts in (False, True):  # the fused vector is the product plus the offsets of the attended (x, y)
        both = AttentionFusion(6, 0, 3, fused_dim=7, attention_dim=4, glimpses=2, coordinates=True, counts=counts,
                               compare=True).eval()
        with torch.no_grad():
            out, feats = both(q, None, grid), both.features(grid)
            z, weights = both.read(q, feats)
            product = torch.tanh(both.q_proj(q)) * torch.tanh(both.z_proj(z))
            torch.testing.assert_close(out, product + both.compare(q, torch.bmm(weights, feats[..., -2:])))
    assert len(AttentionFusion(6, 0, 2, glimpses=3, coordinates=True, compare=True).pairs) == 3
    for bad in (dict(glimpses=2, coordinates=False), dict(glimpses=1, coordinates=True)):
        with pytest.raises(ValueError, match="compare: true needs coordinates: true and glimpses >= 2"):
            AttentionFusion(6, 0, 2, compare=True, **bad)
    assert GroundedFusion(6, 0, 5, compare=True).attention.compare_proj is not None
    with pytest.raises(ValueError, match="compare: true needs glimpses.*got glimpses: 0"):
        GroundedFusion(6, 0, 5, glimpses=0, compare=True)
    assert AttentionFusion(6, 0, 2, glimpses=2, coordinates=True).compare_proj is None  # off by default


def test_relation_glimpses_add_only_their_compared_offsets_and_read_the_grid_detached() -> None:
    """``relation_glimpses``: a separate ``AttentionFusion(compare=True, product=False)`` whose gated offsets are
    added to the fusion; with its gates at zero the fusion is the one without it; it reads the grid detached."""
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True).eval(), [[1, 4, 5, 2], [1, 6, 2, 0]])
    grid = torch.randn(2, 4, 5)
    fusion, plain = _fusion(relation_glimpses=3), _fusion()
    plain.load_state_dict({k: v for k, v in fusion.state_dict().items() if not k.startswith("relations.")})
    relations = fusion.relations
    assert relations.q_proj is None and relations.z_proj is None and len(relations.pairs) == 3
    assert fusion.config["relation_glimpses"] == 3 and relations.config["product"] is False
    with torch.no_grad():
        out = fusion(q, None, grid, words=words)
        term = relations.compare(q, torch.bmm(relations.last_weights, relations.features(grid)[..., -2:]))
        torch.testing.assert_close(out, plain(q, None, grid, words=words) + term)
        assert term.abs().min() > 0
        relations.compare_proj.weight.zero_(), relations.compare_proj.bias.zero_()
        assert fusion(q, None, grid, words=words).equal(plain(q, None, grid, words=words))
    grads = {}
    for detach in (True, False):
        torch.manual_seed(0)
        alone = _fusion(glimpses=0, relation_glimpses=2, detach_grid=detach)  # the word gates start at zero
        grid = torch.randn(2, 4, 5, requires_grad=True)
        alone(q.detach(), None, grid, words=QuestionWords(*(t.detach() for t in words))).sum().backward()
        grads[detach] = grid.grad
    assert grads[True] is None and grads[False].abs().sum() > 0
    assert _fusion().relations is None  # off by default
    for bad in (1, -1):
        with pytest.raises(ValueError, match=f"relation_glimpses must be 0 or >= 2.*got {bad}"):
            GroundedFusion(6, 0, 5, relation_glimpses=bad)
    for bad in (dict(compare=False), dict(compare=True, counts=True)):
        with pytest.raises(ValueError, match="product: false .* needs compare: true and counts: false"):
            AttentionFusion(6, 0, 2, glimpses=2, coordinates=True, product=False, **bad)


def test_phrase_pointers_start_silent_lean_by_order_and_skip_padding() -> None:
    torch.manual_seed(0)
    enc = QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = question_words(enc, [[1, 4, 5, 6, 7, 2], [1, 6, 2, 0, 0, 0]])
    grid = torch.randn(2, 4, 5)
    with_pointers, without = _fusion(pointers=True), _fusion()
    without.load_state_dict(with_pointers.state_dict(), strict=False)  # the shared weights
    with torch.no_grad():
        torch.testing.assert_close(with_pointers(q, None, grid, words=words), without(q, None, grid, words=words))
        pointers = PhrasePointers(6, 4, glimpses=2)
        nn.init.zeros_(pointers.content.weight)  # order alone
        nn.init.zeros_(pointers.content.bias)
        assert pointers(words).shape == (2, 2, 4)  # (Q, K, A)
    weights = pointers.last_weights  # (Q, K, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2))
    assert weights[1, :, 3:].abs().max() == 0  # padding is never picked
    first, last = weights[0, 0], weights[0, 1]
    assert (first.diff() < 0).all() and (last.diff() > 0).all()  # the first leans to the start, the last to the end
    assert pointers.order.tolist() == [-1.0, 1.0]
    assert PhrasePointers(6, 4, glimpses=3).order.tolist() == [-1.0, 0.0, 1.0]


def test_grounded_fusion_is_registered_and_checks_its_input() -> None:
    fusion = FUSIONS.build({"name": "grounded", "question_dim": 6, "image_dim": 0, "grid_dim": 5, "heads": 2})
    assert isinstance(fusion, GroundedFusion) and fusion.needs_words and fusion.config["heads"] == 2
    assert not fusion.attention.multiplicative  # a stored description from before the option: additive scores
    assert_needs_square_grid_and_words(fusion)
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True), [[1, 4, 2]])
    with pytest.raises(ValueError, match="phrases: true"):
        fusion(q, None, torch.randn(1, 4, 5), words=words._replace(phrases=None))
    with pytest.raises(ValueError, match=r"pointers=True\) needs a question encoder with phrases: true"):
        PhrasePointers(6, 4, 2)(words._replace(phrases=None))
    with pytest.raises(ValueError, match="heads"):
        GroundedFusion(6, 0, 5, heads=0)
    with pytest.raises(ValueError, match="glimpses"):
        GroundedFusion(6, 0, 5, glimpses=-1)
    with pytest.raises(ValueError, match="pointers: true needs glimpses.*got glimpses: 0"):
        GroundedFusion(6, 0, 5, glimpses=0, pointers=True)


def test_save_vqa_load_vqa_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    meta = assert_round_trip(tmp_path, lambda q, v, g: GroundedFusion(q, v, g, fused_dim=10, attention_dim=6, heads=3,
                                                                      read_features=False, pointers=True,
                                                                      multiplicative=True, compare=True,
                                                                      relation_glimpses=2, word_relations=2,
                                                                      grounding_weight=0.5), "grounded")
    assert meta["heads"] == 3 and meta["read_features"] is False and meta["pointers"] is True
    assert meta["multiplicative"] is True and meta["compare"] is True and meta["relation_glimpses"] == 2
    assert meta["word_relations"] == 2 and meta["grounding_weight"] == 0.5


def test_the_default_config_is_the_grounded_fusion_and_reloads(tiny_shapes: Path, tmp_path: Path) -> None:
    cli = fit_vqa_layer("configs/vqa/shapes.yaml", tiny_shapes, tmp_path)  # shapes.yaml layered on itself
    model = cli.model.model
    assert isinstance(model.fusion, GroundedFusion) and model.fusion.config["heads"] == 4
    assert model.fusion.config["pointers"] is False and model.fusion.pointers is None
    assert model.fusion.config["multiplicative"] is False and not model.fusion.attention.multiplicative
    assert model.question_encoder.config["phrases"] is True
    assert model.fusion.config["word_relations"] == 2 and model.fusion.word_relations is not None
    assert model.encoder.config["pixels"] is True and model.fusion.config["grid_dim"] == 128 + 3  # cells' colour
    assert model.fusion.config["detach_grid"] is False  # the word paths train the encoder too
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    assert cli.trainer.logged_metrics["train/auxiliary_loss"] > 0  # the word relations' grounding objective
    path = tmp_path / "grounded.ckpt"
    cli.trainer.save_checkpoint(path)
    assert_reloads_identically(cli, path)


def test_the_model_prepares_each_images_grid_once_with_the_same_answers_and_gradients() -> None:
    """VQAModel normalizes each image's grid once (GroundedFusion.image_features) and gathers it per question; the
    answers and the encoder's gradients are those of the fusion reading each question's own copy of the grid."""
    torch.manual_seed(0)
    model = VQAModel(GridEncoder(), QuestionEncoder(7, 8, 16, phrases=True),
                     GroundedFusion(16, 3, 3, fused_dim=16, attention_dim=16, word_attention_dim=16,
                                    detach_grid=False, word_relations=2), 2, 16, 0.0).eval()
    images = torch.randn(2, 16, 3, requires_grad=True)  # GridEncoder: the "images" are the grids (B, N, Dg)
    tokens, lengths = torch.tensor([[1, 3, 5, 4, 2], [1, 4, 6, 3, 2], [1, 3, 6, 2, 0]]), torch.tensor([5, 5, 4])
    owner = torch.tensor([0, 1, 1])
    got = model(images, tokens, lengths, owner)
    (got_grad,) = torch.autograd.grad(got.sum(), images)
    v, grid = model.encoder(images, return_grid=True)
    q, words = model.question_encoder(tokens, lengths, return_words=True)
    want = model.classifier(model.fusion(q, v[owner], grid[owner], words=words))  # each question's own grid copy
    (want_grad,) = torch.autograd.grad(want.sum(), images)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    with pytest.raises(ValueError, match="needs the encoder's grid"):
        model.fusion(q, None, None, words=words)
