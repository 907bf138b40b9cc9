"""A question read word by word: what the question encoder gives fusions that read words
(:class:`~captioning.models.relational.RelationalFusion`); its own module so that the encoder (``vqa.py``) and
the fusions both import it without importing each other."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class QuestionWords(NamedTuple):
    """A question read word by word (for fusions with ``needs_words``).

    Attributes:
        states: The last recurrent layer's output at every token, (Q, T, H): each word in its left context.
        phrases: With ``phrases``, each token's local phrase feature, (Q, T, H): the word and the one before,
            context-free ("blue square" reads the same in "is there a blue square?" and "... of the blue
            square?"); otherwise ``None``.
        mask: True at real tokens, (Q, T).
        tokens: The token ids, (Q, T) (targets of :class:`~captioning.models.grounded.WordRelations`' grounding
            objective).
    """

    states: Tensor
    phrases: Tensor | None
    mask: Tensor
    tokens: Tensor | None = None

    def softmax(self, scores: Tensor) -> Tensor:
        """Softmax over the tokens of scores (Q, K, T), in their dtype; padding gets zero weight."""
        return scores.masked_fill(~self.mask.unsqueeze(1), float("-inf")).softmax(dim=-1)
