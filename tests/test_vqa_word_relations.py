"""Word relations (``GroundedFusion(word_relations=K)``): every phrase finds its place, gates from each word's
state and the whole question compare the places, and a grounding objective that a place alone cannot lower."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captioning.models.film import coordinates
from captioning.models.grounded import WordRelations
from captioning.models.vqa import GroundedFusion, QuestionEncoder, QuestionWords, VQAModel
from vqa_helpers import SIDE, GridEncoder, assert_offset_of_a_from_b, left_right_scenes, mirrored, question_words


def _relations(**kwargs) -> WordRelations:
    return WordRelations(word_dim=6, feat_dim=5 + 2, heads=3, attention_dim=4, gate_hidden=8, **kwargs)


def test_the_heads_sum_each_tokens_place_with_gates_from_its_state_and_the_whole_question() -> None:
    torch.manual_seed(0)
    enc, relations = QuestionEncoder(10, 4, 6, phrases=True).eval(), _relations().eval()
    q, words = question_words(enc, [[1, 4, 5, 2], [1, 4, 6, 2], [1, 4, 5, 0]])  # the last one padded
    feats = torch.cat([torch.randn(3, 4, 5), coordinates(2).expand(3, -1, -1)], dim=-1)  # (Q, N = 2×2, D)
    with torch.no_grad():
        out = relations(feats, words, q)  # (Q, K·2)
    weights, gates = relations.last_weights, relations.last_gates  # (Q, T, N), (Q, T, K)
    assert out.shape == (3, 6) and weights.shape == (3, 4, 4) and gates.shape == (3, 4, 3)
    places = torch.bmm(weights, feats[..., -2:])  # (Q, T, 2)
    torch.testing.assert_close(out, torch.einsum("qtk,qtc->qkc", gates, places).flatten(1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert gates[2, 3].abs().max() == 0  # no gate at padding
    feats = feats[:1].expand(3, -1, -1)  # one grid for all three questions
    with torch.no_grad():
        relations(feats, words, q)
    torch.testing.assert_close(relations.last_weights[0, :2], relations.last_weights[1, :2])  # same phrases ...
    assert not torch.allclose(relations.last_gates[0, :2], relations.last_gates[1, :2])  # ... a later word moves
    assert relations.auxiliary_loss is None  # the grounding objective is for training only


def _constructed() -> WordRelations:
    """Phrase channel 0 finds grid channel 0 (object A), channel 1 finds channel 1 (B), whatever the place; head
    0's gate is state channel 0 (+1 on the first-named object, -1 on the second)."""
    relations = WordRelations(word_dim=2, feat_dim=2 + 2, heads=1, attention_dim=2, gate_hidden=2)
    with torch.no_grad():
        for p in relations.parameters():
            p.zero_()
        relations.query.weight.copy_(torch.eye(2) * 20.0)  # (A, H)
        relations.key.weight[:, :2].copy_(torch.eye(2) * 20.0)  # (A, D): the objects' channels only
        relations.gate_hidden.weight[0, 0], relations.gate_hidden.weight[1, 0] = 1.0, -1.0  # relu(±h_0)
        relations.gate.weight[0] = torch.tensor([1.0, -1.0])  # relu(h_0) - relu(-h_0) = h_0
    return relations.eval()


def test_gated_places_give_the_offset_of_the_two_named_objects_and_flip_when_mirrored() -> None:
    g = torch.Generator().manual_seed(0)
    grid, left = left_right_scenes(50, g)  # (n, 16, 2): A in channel 0, B in channel 1
    with_coords = lambda grid: torch.cat([grid, coordinates(SIDE).expand(50, -1, -1)], dim=-1)  # noqa: E731
    first_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # phrases of the tokens "A", "B": (T=2, H)
    states = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # +1 at the first-named object, -1 at the second
    words = QuestionWords(states.expand(50, -1, -1), first_a.expand(50, -1, -1), torch.ones(50, 2, dtype=torch.bool))
    relations, q = _constructed(), torch.zeros(50, 2)
    with torch.no_grad():
        offset = relations(with_coords(grid), words, q)[:, 0]  # (n,): the x part of rho_0
        swapped = relations(with_coords(grid), words._replace(phrases=first_a.flip(0).expand(50, -1, -1)), q)[:, 0]
        offset_mirrored = relations(with_coords(mirrored(grid)), words, q)[:, 0]
    assert_offset_of_a_from_b(grid, left, offset, swapped, offset_mirrored)


def test_the_grounding_objective_is_not_lowered_by_a_place_alone() -> None:
    """With every image of the batch alike, what a phrase finds minus what it finds in another image is zero
    wherever it looks: the objective is the same for any attention. With different images it is not."""
    torch.manual_seed(0)
    enc = QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = question_words(enc, [[1, 4, 5, 2], [1, 6, 7, 2], [1, 8, 2, 0], [1, 3, 9, 2]])
    coords = coordinates(2).expand(4, -1, -1)
    alike = torch.cat([torch.randn(1, 4, 5).expand(4, -1, -1), coords], dim=-1)  # (Q, N, D)
    different = torch.cat([torch.randn(4, 4, 5), coords], dim=-1)
    losses = {}
    for seed in (1, 2):  # two different attentions, the same prediction head
        torch.manual_seed(0)
        relations = _relations(grounding_weight=0.5).train()
        torch.manual_seed(seed)
        nn.init.normal_(relations.query.weight), nn.init.normal_(relations.key.weight)
        for name, feats in (("alike", alike), ("different", different)):
            relations(feats, words, q)
            losses[name, seed] = relations.auxiliary_loss
    torch.testing.assert_close(losses["alike", 1], losses["alike", 2])
    assert not torch.allclose(losses["different", 1], losses["different", 2])
    relations = _relations(grounding_weight=0.0).train()
    relations(different, words, q)
    assert relations.auxiliary_loss is None  # weight 0: no objective


def test_the_grounding_objective_predicts_each_word_and_the_one_before_hashed_into_buckets() -> None:
    torch.manual_seed(0)
    enc = QuestionEncoder(10, 4, 6, phrases=True).eval()
    q, words = question_words(enc, [[1, 4, 9, 2], [1, 8, 2, 0]])
    feats = torch.cat([torch.randn(2, 4, 5), coordinates(2).expand(2, -1, -1)], dim=-1)
    relations = _relations(grounding_buckets=5).train()
    relations(feats, words, q)
    found = torch.bmm(relations.last_weights, feats[..., :-2]) - torch.bmm(
        relations.attend(relations.query(words.phrases), relations.key(feats.flip(0))), feats.flip(0)[..., :-2])
    logits = relations.predict(found).unflatten(-1, (2, 5))  # (Q, T, 2, buckets)
    ids = [[(1, 0), (4, 1), (9, 4), (2, 9)], [(1, 0), (8, 1), (2, 8)]]  # (word, word before) of the real tokens
    expected = torch.stack([nn.functional.cross_entropy(logits[i, t], torch.tensor(pair) % 5, reduction="none")
                            for i, row in enumerate(ids) for t, pair in enumerate(row)]).mean()
    torch.testing.assert_close(relations.auxiliary_loss, expected)


def test_the_model_hands_the_grounding_objective_to_training_once() -> None:
    torch.manual_seed(0)
    model = VQAModel(GridEncoder(), QuestionEncoder(7, 8, 16, phrases=True),
                     GroundedFusion(16, 3, 3, fused_dim=16, attention_dim=16, word_relations=2), 2, 16, 0.0)
    tokens, lengths = torch.tensor([[1, 3, 5, 4, 2], [1, 4, 6, 3, 2]]), torch.tensor([5, 5])
    model(torch.randn(2, 16, 3), tokens, lengths, torch.arange(2))
    loss = model.take_auxiliary_loss()
    assert loss is not None and loss.requires_grad and loss > 0
    assert model.take_auxiliary_loss() is None  # cleared once taken
    model.eval()
    model(torch.randn(2, 16, 3), tokens, lengths, torch.arange(2))
    assert model.take_auxiliary_loss() is None  # not in evaluation


def test_word_relations_check_their_options_and_input() -> None:
    assert GroundedFusion(6, 0, 5).word_relations is None  # off unless asked for
    fusion = GroundedFusion(6, 0, 5, word_relations=2, grounding_weight=0.3)
    assert fusion.word_relations.out_dim == 4 and fusion.relation_proj.in_features == 4
    assert fusion.config["word_relations"] == 2 and fusion.config["grounding_weight"] == 0.3
    with pytest.raises(ValueError, match="word_relations must be >= 0 .*got -1"):
        GroundedFusion(6, 0, 5, word_relations=-1)
    with pytest.raises(ValueError, match="heads and grounding_buckets must be >= 1 and grounding_weight >= 0, "
                                         "got 2, 64 and -1"):
        GroundedFusion(6, 0, 5, word_relations=2, grounding_weight=-1.0)
    with pytest.raises(ValueError, match="got 1, 0 and 1"):
        WordRelations(6, 7, heads=1, grounding_buckets=0)
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True), [[1, 4, 2]])
    with pytest.raises(ValueError, match=r"word_relations > 0\) needs a question encoder with phrases: true"):
        _relations()(torch.randn(1, 4, 7), words._replace(phrases=None), q)
    with pytest.raises(ValueError, match=r"grounding objective needs the question's tokens"):
        _relations().train()(torch.randn(1, 4, 7), words._replace(tokens=None), q)
    _relations().eval()(torch.randn(1, 4, 7), words._replace(tokens=None), q)  # answering needs neither
