"""Training targets: tokenizers (text <-> class ids) and training objectives.

Objective interface (what a trainer relies on; ``build_objective(name)`` returns one):

* ``name`` (str) and ``targets_kind`` (str): what one utterance's target is. ``"tokens"`` (CTC): a list of
  token ids >= 1, from :meth:`Tokenizer.encode`, of any length.
* ``loss(logits (B, T', C), out_lengths (B,), targets: list, utt_ids=None) -> summed loss tensor``: the
  sum over the batch, so trainers choose their own normaliser from ``last_stats`` (an
  :class:`ObjectiveStats`: utterances, frames, units, skipped).
* ``greedy_decode(logits, out_lengths) -> list[list[int]]``: a quick hypothesis for validation accuracy.

A frame-level cross-entropy objective for hybrid HMM targets plugs in through the same interface: its
``targets_kind`` is ``"frames"`` (one int array of class ids per utterance, already at the model's output
frame rate, so ``len(target) == out_length`` is checked), ``loss`` is the masked sum of
``F.cross_entropy`` over valid frames with ``units`` = frames, and ``greedy_decode`` returns the per-frame
argmax. It is registered in ``_OBJECTIVES`` below; nothing else in the trainer changes.
"""
from __future__ import annotations

from asrkt.targets.ctc import CtcObjective, ObjectiveStats, min_ctc_frames
from asrkt.targets.tokenizer import Tokenizer, read_tokens, train_tokenizer
from asrkt.utils.errors import AsrktError

__all__ = ["CtcObjective", "ObjectiveStats", "Tokenizer", "build_objective", "min_ctc_frames", "read_tokens",
           "train_tokenizer"]

_OBJECTIVES = {"ctc": CtcObjective}


def build_objective(name: str, **kwargs):
    """The objective called ``name`` (``ctc``); keyword arguments go to its constructor."""
    if name not in _OBJECTIVES:
        raise AsrktError(f"unknown training objective {name!r} (known: {', '.join(sorted(_OBJECTIVES))})")
    return _OBJECTIVES[name](**kwargs)
