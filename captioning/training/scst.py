"""Self-critical sequence training (Rennie et al. 2017) as a training objective of the captioning module.

For each image, ``num_samples`` captions are sampled and the greedy caption is decoded; each sample's
reward is its CIDEr-D minus the greedy caption's (the baseline), and the loss is the REINFORCE estimate
``-(r(w^s) - r(ŵ)) log p(w^s)`` per sampled token. CIDEr-D uses document frequencies of the *training*
references, computed once per training set and cached in a JSON file keyed by a fingerprint of the
training captions.

Used from config (``configs/scst.yaml``): ``model.objective: captioning.training.scst.SelfCritical`` and
``model.init_weights`` pointing at a cross-entropy checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import torch
from torch import Tensor

from captioning.models.decoding import PAD, greedy, sample_with_grad
from captioning.core.io import atomic_path
from captioning.training.objectives import Objective
from captioning.metrics import CiderDStatistics, tokenize
from captioning.metrics.reward import cider_d_scores


def _scored(caption: str) -> str:
    """A caption tokenized as the metrics tokenize (punctuation dropped), like the references."""
    return " ".join(tokenize(caption))


def training_statistics(references: list[list[str]], cache: Path | None = None) -> CiderDStatistics:
    """CIDEr-D document frequencies of tokenized training references, read from ``cache`` when it was
    written for the same references, else computed (and written to ``cache``)."""
    fingerprint = hashlib.sha256(json.dumps(references).encode()).hexdigest()
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("fingerprint") == fingerprint:
            frequency = {tuple(gram.split(" ")): count for gram, count in data["document_frequency"].items()}
            return CiderDStatistics(frequency, data["ref_len"], data["n"])
    stats = CiderDStatistics.from_references(references)
    if cache is not None:
        _write_statistics(cache, fingerprint, stats)
    return stats


def _write_statistics(cache: Path, fingerprint: str, stats: CiderDStatistics) -> None:
    """Writes the cache atomically, streaming the n-grams in chunks (millions of them on COCO: no second copy
    of them, nor one JSON string of all, is held in memory)."""
    encode = json.encoder.encode_basestring_ascii
    items = iter(stats.document_frequency.items())
    with atomic_path(cache) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f'{{"fingerprint": {json.dumps(fingerprint)}, "ref_len": {json.dumps(stats.ref_len)}, '
                f'"n": {stats.n}, "document_frequency": {{')
        separator = ""
        while chunk := list(itertools.islice(items, 100_000)):
            f.write(separator + ", ".join(f"{encode(' '.join(gram))}: {count}" for gram, count in chunk))
            separator = ", "
        f.write("}}")


class SelfCritical(Objective):
    """The SCST objective: CIDEr-D reward of sampled captions with the greedy caption as baseline.

    Args:
        num_samples: Captions sampled per image (Rennie et al. use 1; 5 lowers the variance).
        temperature: Sampling temperature (the policy gradient uses temperature-1 log-probabilities).
        stats_cache: JSON file caching the training set's CIDEr-D document frequencies; default
            ``<default_root_dir>/cider_d_train_df.json``.
        train_encoder: Let the policy gradient reach the encoder; by default only the decoder is
            fine-tuned, as with the fixed CNN features of Rennie et al.
    """

    def __init__(self, num_samples: int = 5, temperature: float = 1.0, stats_cache: str | None = None,
                 train_encoder: bool = False) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.num_samples, self.temperature, self.stats_cache = num_samples, temperature, stats_cache
        self.train_encoder = train_encoder
        self.stats: CiderDStatistics | None = None
        self._references: dict[int, list[str]] = {}  # image id -> tokenized references

    def _prepare(self, module) -> None:
        images = module.trainer.datamodule.images("train")
        references = [[_scored(c) for c in im.captions] for im in images]
        self._references = {im.image_id: refs for im, refs in zip(images, references)}
        cache = Path(self.stats_cache or Path(module.trainer.default_root_dir) / "cider_d_train_df.json")
        self.stats = training_statistics(references, cache)

    def __call__(self, module, batch: dict) -> Tensor:
        """The loss of one training batch (normalized per sampled token over all ranks)."""
        if self.stats is None:
            self._prepare(module)
        n, max_len = self.num_samples, module.hparams.max_len
        decoder, vocab = module.captioner.decoder, module.vocab
        with torch.set_grad_enabled(self.train_encoder):
            v = module.features(batch)  # (B, D): encoded, or from the feature cache
        with torch.no_grad():
            baseline = [_scored(vocab.decode(r)) for r in greedy(decoder, v, max_len).tokens.tolist()]
        sampled = sample_with_grad(decoder, v.repeat_interleave(n, dim=0), max_len, self.temperature)  # B*n
        texts = [_scored(vocab.decode(r)) for r in sampled.tokens.tolist()]
        refs = [self._references[i] for i in batch["image_id"].tolist()]  # per image
        base = cider_d_scores(baseline, refs, self.stats)
        reward = cider_d_scores(texts, [r for r in refs for _ in range(n)], self.stats)
        advantage = torch.tensor(reward, device=v.device) - torch.tensor(base, device=v.device).repeat_interleave(n)
        mask = sampled.tokens != PAD  # (B*n, T): the sampled words and <END>
        summed = -(advantage[:, None] * sampled.token_log_probs * mask).sum()
        module.log_dict({"train/sample_cider": sum(reward) / len(reward), "train/greedy_cider": sum(base) / len(base)},
                        batch_size=len(base))
        return module.global_token_mean(summed, mask.sum(), "train/scst_loss")
