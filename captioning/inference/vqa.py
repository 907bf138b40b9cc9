"""Answering free-form questions about image files with a loaded VQA model (``captioning vqa ask``).

Questions come one by one or from a JSON-lines file (``{"image": …, "question": …}`` per line). They are
answered in batches: each batch's distinct images are read and encoded once. Scores are the classifier's
sigmoid outputs: the model is trained with binary cross-entropy on soft scores, so every answer has its own
probability-like score in [0, 1] and the scores need not sum to 1. A line whose image cannot be read or
whose question has no word the model knows (every token ``<UNK>``) becomes an error row naming the line and
the problem; the other lines are still answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from captioning.data.images import ImageRef, read_image
from captioning.data.vocab import AnswerVocab, Vocabulary
from captioning.inference.checkpoint import LoadedVQA

MAX_WORDS = 20  # questions are cut to this many words, as VQADataModule's default max_words


@dataclass
class AskItem:
    """One question about one image.

    Attributes:
        line: 1-based line of the questions file (1 for a single question).
        image: The image as the input names it.
        path: Where the image is read from.
        question: The question text.
    """

    line: int
    image: str
    path: Path
    question: str


def error_row(line: int, image: object, question: object, problem: str) -> dict:
    """One errors-file row: ``{"line", "image", "question", "error"}``."""
    return {"line": line, "image": image, "question": question, "error": problem}


def read_questions_file(path: str | Path) -> tuple[list[AskItem], list[dict]]:
    """The questions of a JSON-lines file and the error rows of its malformed lines (blank lines skipped).

    Image paths are relative to the file's folder unless absolute.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"questions file not found: {path}")
    items, errors = [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(error_row(number, None, None, f"not valid JSON ({err})"))
            continue
        image = entry.get("image") if isinstance(entry, dict) else None
        question = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(image, str) or not isinstance(question, str):
            errors.append(error_row(number, image, question, 'needs a string "image" and a string "question"'))
            continue
        where = Path(image).expanduser()
        items.append(AskItem(number, image, where if where.is_absolute() else path.parent / where, question))
    return items, errors


def encode_question(vocab: Vocabulary, question: str, max_words: int = MAX_WORDS) -> list[int]:
    """Token ids ``<START> words <END>`` (cut to ``max_words`` words), as in training.

    Raises:
        ValueError: if the question has no word or no word the model knows.
    """
    ids = vocab.encode(question)[1:-1][:max_words]
    if not ids:
        raise ValueError("empty question")
    if not any(i != vocab.unk_id and any(c.isalnum() for c in vocab.itos[i]) for i in ids):  # "?" is no word
        raise ValueError(f"no known word: every word of {question!r} is unknown to the model "
                         f"(its vocabulary has {len(vocab) - 4} words)")
    return [vocab.start_id, *ids, vocab.end_id]


def top_answers(logits: Tensor, answers: AnswerVocab, k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` best answers of each question with their sigmoid scores, best first; ``logits`` (Q, A)."""
    scores, index = torch.sigmoid(logits.float()).topk(min(k, logits.size(-1)), dim=-1)  # (Q, k) each
    return [[(answers.itos[i], round(s, 6)) for i, s in zip(row_i, row_s)]
            for row_i, row_s in zip(index.tolist(), scores.tolist())]


@torch.no_grad()
def answer_batch(loaded: LoadedVQA, images: Tensor, tokens: list[list[int]], owner: list[int],
                 k: int = 5) -> list[list[tuple[str, float]]]:
    """Top answers of questions (token ids) about images (B, 3, S, S); ``owner[i]`` is question i's image."""
    device = next(loaded.model.parameters()).device
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in tokens], batch_first=True,
                                             padding_value=Vocabulary.pad_id)  # (Q, T)
    lengths = torch.tensor([len(t) for t in tokens])  # (Q,)
    logits = loaded.model(images.to(device), padded.to(device), lengths.to(device),
                          torch.tensor(owner, device=device))  # (Q, A)
    return top_answers(logits, loaded.answers, k)


def answer_row(item: AskItem, top: list[tuple[str, float]]) -> dict:
    """One output row: ``{"line", "image", "question", "answer", "score", "top": [[answer, score], …]}``."""
    return {"line": item.line, "image": item.image, "question": item.question, "answer": top[0][0],
            "score": top[0][1], "top": [list(pair) for pair in top]}


def _answer_chunk(loaded: LoadedVQA, chunk: list[AskItem], k: int) -> tuple[list[dict], list[dict]]:
    """Rows and error rows of one batch of questions; each distinct image is read once."""
    errors, ready, tokens = [], [], []
    for item in chunk:
        try:
            tokens.append(encode_question(loaded.vocab, item.question))
            ready.append(item)
        except ValueError as err:
            errors.append(error_row(item.line, item.image, item.question, f"question: {err}"))
    images: dict[Path, Tensor | str] = {}
    for item in ready:
        if item.path not in images:
            try:
                images[item.path] = read_image(ImageRef(item.image, item.path), loaded.image_size)  # (3, S, S)
            except ValueError as err:
                images[item.path] = str(err)
    keep = [i for i, item in enumerate(ready) if isinstance(images[item.path], Tensor)]
    errors += [error_row(item.line, item.image, item.question, f"image {str(item.path)!r}: {images[item.path]}")
               for item in ready if not isinstance(images[item.path], Tensor)]
    if not keep:
        return [], errors
    paths = list(dict.fromkeys(ready[i].path for i in keep))
    slot = {p: b for b, p in enumerate(paths)}
    tops = answer_batch(loaded, torch.stack([images[p] for p in paths]), [tokens[i] for i in keep],
                        [slot[ready[i].path] for i in keep], k)
    return [answer_row(ready[i], top) for i, top in zip(keep, tops)], errors


def ask(loaded: LoadedVQA, items: list[AskItem], k: int = 5, batch_size: int = 64) -> tuple[list[dict], list[dict]]:
    """Answers ``items`` in batches of ``batch_size`` questions; returns rows and error rows, by line."""
    if k < 1 or batch_size < 1:
        raise ValueError(f"need k >= 1 and batch_size >= 1, got {k} and {batch_size}")
    rows, errors = [], []
    for start in range(0, len(items), batch_size):
        got, failed = _answer_chunk(loaded, items[start:start + batch_size], k)
        rows += got
        errors += failed
    return rows, sorted(errors, key=lambda e: e["line"])
