"""The decoder: every cell × injection trains; fused teacher forcing equals step-by-step decoding."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from captioning.models.cells import CELLS, injected_input_term, lstm_layer
from captioning.models.decoder import INJECTIONS, RNNDecoder

V, D = 12, 8


def _tiny_batch():
    v = torch.randn(4, D)  # (B, D)
    tokens = torch.randint(4, V, (4, 7))  # (B, T)
    tokens[:, 0] = 1
    return v, tokens


@pytest.mark.parametrize("cell,injection", itertools.product(CELLS, INJECTIONS))
def test_fused_teacher_forcing_equals_stepping(cell: str, injection: str) -> None:
    dec = RNNDecoder(V, D, embed_dim=6, hidden_dim=10, cell=cell, num_layers=2, dropout=0.3,
                     injection=injection).eval()
    v, tokens = _tiny_batch()
    fused = dec(v, tokens)  # (B, T, V)
    state, stepped = dec.init_state(v), []
    for t in range(tokens.size(1)):
        logits, state = dec.step(tokens[:, t], state)
        stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), fused, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell,injection", itertools.product(CELLS, INJECTIONS))
def test_every_cell_and_injection_trains(cell: str, injection: str) -> None:
    dec = RNNDecoder(V, D, embed_dim=8, hidden_dim=16, cell=cell, num_layers=2, injection=injection)
    opt = torch.optim.Adam(dec.parameters(), lr=2e-2)
    v, tokens = _tiny_batch()
    losses = []
    for _ in range(60):
        logits = dec(v, tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


def test_every_step_injection_uses_the_image_at_every_step() -> None:
    dec = RNNDecoder(V, D, embed_dim=6, hidden_dim=10, injection="every_step").eval()
    v, tokens = _tiny_batch()
    w_ih = dec.rnn.weight_ih_l0[:, 6:]  # the W_ih block of [W_xh | W_ih]
    assert w_ih.shape == (4 * 10, D)
    state = dec.init_state(v)
    torch.testing.assert_close(state["ctx"], v @ w_ih.t())
    # Changing v changes the logits at the last position even with identical tokens.
    assert not torch.allclose(dec(v, tokens)[:, -1], dec(v + 1, tokens)[:, -1])


def test_unknown_cell_and_injection_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown cell 'lstmm'"):
        RNNDecoder(V, D, cell="lstmm")
    with pytest.raises(ValueError, match="unknown injection 'sometimes'"):
        RNNDecoder(V, D, injection="sometimes")


def test_precomputed_image_term_equals_the_fused_module_on_concatenated_inputs() -> None:
    dec = RNNDecoder(V, D, embed_dim=6, hidden_dim=10, cell="lstm", num_layers=2, dropout=0.3).eval()
    v, tokens = _tiny_batch()
    v.requires_grad_(True)
    results = []
    for precompute in (True, False):
        dec.precompute_image_term = precompute
        logits = dec(v, tokens)  # (B, T, V)
        grads = torch.autograd.grad((logits * torch.linspace(-1, 1, V)).sum(), [v, *dec.parameters()])
        results.append((logits, grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_custom_recurrence_and_input_term_gradients() -> None:
    double = dict(dtype=torch.float64, requires_grad=True)
    pre, w_hh = torch.randn(4, 2, 8, **double), torch.randn(8, 2, **double)  # (T, B, 4H), (4H, H)
    h0, c0 = torch.randn(2, 2, **double), torch.randn(2, 2, **double)
    assert torch.autograd.gradcheck(lstm_layer, (pre, w_hh, h0, c0))
    x, v = torch.randn(3, 2, 4, **double), torch.randn(2, 5, **double)  # (T, B, E), (B, D)
    w, b = torch.randn(8, 9, **double), torch.randn(8, **double)
    assert torch.autograd.gradcheck(injected_input_term, (x, v, w, b))
    concat = torch.cat([x, v[None].expand(3, -1, -1)], dim=-1)  # (T, B, E + D)
    torch.testing.assert_close(injected_input_term(x, v, w, b), F.linear(concat, w, b))
