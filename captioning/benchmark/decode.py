"""Decoding throughput: the codebase's batched greedy and beam search against a plain per-step baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.benchmark.timing import measure
from captioning.benchmark.workload import Workload, build_decoder, image_features
from captioning.models.decoding import END, PAD, START, beam_search, greedy
from captioning.models.decoder import RNNDecoder  # the baseline copies its LSTM


class BaselineDecoder(nn.Module):
    """The plain way: an ``nn.LSTMCell`` over ``[x_t; v]`` stepped in Python, the vocabulary projection and
    softmax inside the loop, beam search one image at a time. Like the codebase, it spends no step on the
    forced final ``<END>``, so the ratio measures batching and the loop's overheads only. It copies the weights of an
    :class:`RNNDecoder` (one LSTM layer, every-step injection), so both decode the same captions. It never
    stops early: the benchmark makes ``<END>`` unreachable so that all captions have the same length."""

    def __init__(self, dec: RNNDecoder) -> None:
        super().__init__()
        rnn = dec.rnn
        self.embed = dec.embed
        self.cell = nn.LSTMCell(rnn.input_size, rnn.hidden_size).to(dec.out.weight.device)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.cell, name).copy_(getattr(rnn, f"{name}_l0"))
        self.out = dec.out

    def _logp(self, h: Tensor) -> Tensor:
        logits = self.out(h)  # (N, V)
        logits[:, [PAD, START]] = float("-inf")
        return F.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def greedy(self, v: Tensor, max_len: int) -> Tensor:
        """Greedy captions (B, max_len + 1), batched over images; the final ``<END>`` is forced."""
        b, hid = v.size(0), self.cell.hidden_size
        h, c = v.new_zeros(b, hid), v.new_zeros(b, hid)
        tok, words = torch.full((b,), START, device=v.device), []
        for _ in range(max_len):
            h, c = self.cell(torch.cat([self.embed(tok), v], dim=1), (h, c))
            tok = self._logp(h).argmax(dim=-1)
            words.append(tok)
        return torch.stack([*words, torch.full_like(tok, END)], dim=1)

    @torch.no_grad()
    def beam_one(self, v: Tensor, k: int, max_len: int) -> Tensor:
        """Beam search of one image ``v`` (D,): the best caption (max_len + 1,) by log-probability."""
        h, c = v.new_zeros(k, self.cell.hidden_size), v.new_zeros(k, self.cell.hidden_size)
        vk, tok = v.expand(k, -1), torch.full((k,), START, device=v.device)
        scores, seqs = v.new_zeros(k), tok.new_zeros(k, 0)
        for t in range(max_len):
            h, c = self.cell(torch.cat([self.embed(tok), vk], dim=1), (h, c))
            logp = self._logp(h)  # (K, V)
            if t == 0:
                logp = logp[:1]  # all beams are identical before the first word
            scores, flat = (scores[: logp.size(0), None] + logp).view(-1).topk(k)
            parent, tok = flat // logp.size(1), flat % logp.size(1)
            seqs = torch.cat([seqs[parent], tok[:, None]], dim=1)
            h, c = h[parent], c[parent]
        return torch.cat([seqs[scores.argmax()], tok.new_full((1,), END)])


def _autocast(fn, device: torch.device):
    def run():
        with torch.autocast(device.type, torch.bfloat16):
            return fn()

    return run


def decode_variants(w: Workload, device: torch.device) -> tuple[dict, dict, dict]:
    """Callables for every decoding measurement, their image counts, and whether the outputs agree."""
    dec = build_decoder(w, device).eval()
    gen = torch.Generator().manual_seed(2)
    v = image_features(w, w.decode_images, gen).to(device)
    vb = v[: w.baseline_beam_images]
    fns = {
        "greedy": lambda: greedy(dec, v, w.words),
        f"beam{w.beam_size}": lambda: beam_search(dec, v, w.beam_size, w.words),
    }
    if w.decoder == "lstm":  # the baseline is an nn.LSTMCell with the decoder's weights
        base = BaselineDecoder(dec).eval()
        fns["baseline greedy"] = lambda: base.greedy(v, w.words)
        fns[f"baseline beam{w.beam_size}"] = lambda: [base.beam_one(x, w.beam_size, w.words) for x in vb]
    if device.type == "cuda":  # the same work under bf16 autocast
        for name in ("greedy", f"beam{w.beam_size}"):
            fns[f"{name} bf16 autocast"] = _autocast(fns[name], device)
    images = {name: (w.baseline_beam_images if name.startswith("baseline beam") else w.decode_images)
              for name in fns}
    if w.decoder != "lstm":
        return fns, images, {}
    agree = {
        "greedy": torch.equal(greedy(dec, v, w.words).tokens, base.greedy(v, w.words)),
        f"beam{w.beam_size}": torch.equal(beam_search(dec, vb, w.beam_size, w.words).tokens[:, 0],
                                          torch.stack([base.beam_one(x, w.beam_size, w.words) for x in vb])),
    }
    return fns, images, agree


def bench_decoding(w: Workload, device: torch.device, warmup: int, repeats: int, clock: str) -> dict:
    """Captions per second of batched greedy and beam search vs the baseline, and their ratios."""
    fns, images, agree = decode_variants(w, device)
    timings = measure(fns, device, warmup, repeats, clock)
    rows = {name: {"captions_per_s": t.rate(images[name]), "images": images[name], "seconds": t.seconds}
            for name, t in timings.items()}
    beam = f"beam{w.beam_size}"
    speedup = {name: rows[name]["captions_per_s"]["median"] / rows[f"baseline {name}"]["captions_per_s"]["median"]
               for name in ("greedy", beam) if f"baseline {name}" in rows}
    out = {"greedy_captions_per_s": rows["greedy"]["captions_per_s"],
           f"{beam}_captions_per_s": rows[beam]["captions_per_s"], "variants": rows,
           "speedup_over_baseline": speedup, "same_captions_as_baseline": agree}
    if w.decoder != "lstm":
        out["baseline_skipped"] = f"the per-step baseline is an nn.LSTMCell; it has no {w.decoder} counterpart"
    return out
