"""Loading a captioner or a VQA model from a training checkpoint alone, without unpickling arbitrary objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from captioning.models.captioner import Captioner, create_captioner
from captioning.data.vocab import AnswerVocab
from captioning.models.vqa import VQAModel, create_vqa_model, vqa_model_meta
from captioning.data.vocab import Vocabulary

KEY = "captioning"  # checkpoint entry with the vocabulary and the model configuration
PREFIX = "captioner."  # state-dict prefix of the captioner inside the training module
VQA_KEY = "vqa"  # checkpoint entry with the VQA model's vocabularies and configuration
VQA_PREFIX = "model."  # state-dict prefix of the VQA model inside its training module


@dataclass
class LoadedCaptioner:
    """A captioner rebuilt from a checkpoint, with what is needed to caption new images."""

    model: Captioner
    vocab: Vocabulary
    image_size: int
    meta: dict


def captioner_meta(model: Captioner, vocab: Vocabulary, image_size: int) -> dict:
    """The plain-data description stored in checkpoints under ``"captioning"``."""
    return {"format": 1, "vocab": vocab.to_dict(), "encoder": dict(model.encoder.config),
            "decoder": dict(model.decoder.config), "image_size": image_size}


def load_captioner(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCaptioner:
    """Rebuilds the captioner of a checkpoint (``torch.load(weights_only=True)``), in eval mode.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and the missing or bad entry.
    """
    path = Path(path)
    ckpt = _read(path, map_location)
    meta = _meta(ckpt, path, KEY, ("vocab", "encoder", "decoder", "image_size"))
    model = create_captioner(meta)
    _load_state(model, _state(ckpt, PREFIX), path)
    return LoadedCaptioner(model.eval(), Vocabulary.from_dict(meta["vocab"]), int(meta["image_size"]), meta)


@dataclass
class LoadedVQA:
    """A VQA model rebuilt from a checkpoint, with its question and answer vocabularies."""

    model: VQAModel
    vocab: Vocabulary
    answers: AnswerVocab
    image_size: int
    meta: dict


def vqa_meta(model: VQAModel, vocab: Vocabulary, answers: AnswerVocab, image_size: int) -> dict:
    """The plain-data description stored in checkpoints under ``"vqa"``."""
    return {"format": 2, "vocab": vocab.to_dict(), "answers": answers.to_dict(), "image_size": image_size,
            **vqa_model_meta(model)}


def save_vqa(path: str | Path, model: VQAModel, vocab: Vocabulary, answers: AnswerVocab, image_size: int) -> Path:
    """Writes a checkpoint that :func:`load_vqa` reads, without a training run (tests, converted weights),
    atomically."""
    from captioning.core.io import atomic_path

    ckpt = {VQA_KEY: vqa_meta(model, vocab, answers, image_size),
            "state_dict": {VQA_PREFIX + k: t for k, t in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def load_vqa(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedVQA:
    """Rebuilds the VQA model of a ``captioning vqa fit`` checkpoint (``torch.load(weights_only=True)``), in
    eval mode.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and the missing or bad entry.
    """
    path = Path(path)
    ckpt = _read(path, map_location)
    meta = _meta(ckpt, path, VQA_KEY, ("vocab", "answers", "image_size", "encoder", "question_encoder", "fusion",
                                       "classifier"))
    answers = AnswerVocab.from_dict(meta["answers"])
    model = create_vqa_model(meta, len(answers))
    _load_state(model, _state(ckpt, VQA_PREFIX), path)
    return LoadedVQA(model.eval(), Vocabulary.from_dict(meta["vocab"]), answers, int(meta["image_size"]), meta)


def _meta(ckpt: dict, path: Path, key: str, fields: tuple[str, ...]) -> dict:
    """The checkpoint's ``key`` entry, checked to hold ``fields``; errors name the file and entry."""
    meta = ckpt.get(key)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: no {key!r} entry (vocabulary and model configuration); "
                         f"was it written by this codebase?")
    for field in fields:
        if field not in meta:
            raise ValueError(f"{path}: entry {key!r} has no field {field!r} (written by an older version?)")
    return meta


def _load_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the stored configuration "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def save_captioner(path: str | Path, model: Captioner, vocab: Vocabulary, image_size: int) -> Path:
    """Writes a checkpoint that :func:`load_captioner` reads, without a training run (benchmarks, tests,
    converted weights): the model configuration and vocabulary plus the weights, atomically."""
    from captioning.core.io import atomic_path

    ckpt = {KEY: captioner_meta(model, vocab, image_size),
            "state_dict": {PREFIX + k: t for k, t in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def load_weights(model: Captioner, path: str | Path) -> None:
    """Loads a training checkpoint's captioner weights into ``model`` (same architecture).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, when it is unreadable or its weights do not fit ``model``.
    """
    path = Path(path)
    state = _state(_read(path, "cpu"), PREFIX)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit this model's configuration: {err}") from err


def _read(path: Path, map_location: str | torch.device) -> dict:
    """A checkpoint's content (``torch.load(weights_only=True)``); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a training checkpoint (expected a dict, got {type(ckpt).__name__})")
    return ckpt


def _state(ckpt: dict, prefix: str) -> dict:
    """A model's weights in a training checkpoint, without the LightningModule's ``prefix``."""
    return {k[len(prefix):]: t for k, t in ckpt.get("state_dict", {}).items() if k.startswith(prefix)}
