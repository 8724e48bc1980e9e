"""CTC decoding: per-frame log-probabilities -> token ids -> text.

A decoder is any object with ``decode(log_probs (B, T, C), lengths (B,)) -> list[list[int]]`` (token ids,
blank and repeats removed). Greedy (best path) is the one implemented; a prefix beam search with an LM
slots in by adding a class to :data:`DECODERS` and its options to :class:`DecodeConfig`: the batching,
model forward, text output and scoring in :func:`decode_batches` do not change.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from asrkt.utils.progress import Progress
from asrkt.utils.device import resolve_device  # noqa: F401  (re-exported for callers)
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DecodeConfig:
    method: str = "greedy"  # only "greedy" so far (a prefix beam search + LM would add "beam")
    blank: int = 0  # CTC blank id (asrkt tokenizers put <blk> at 0)
    batch_frames: int = 20000  # input frames per batch (padding included)
    device: str = "auto"  # auto: cuda when available, else cpu


class CtcDecoder:
    """Interface: ``decode(log_probs, lengths) -> list of token-id lists`` (one per utterance)."""

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        raise NotImplementedError


class GreedyCtcDecoder(CtcDecoder):
    """Best path: argmax per frame, merge repeats, drop blanks (:meth:`CtcObjective.greedy_decode`)."""

    def __init__(self, blank: int = 0):
        from asrkt.targets import CtcObjective

        self.blank = blank
        self._objective = CtcObjective(blank=blank)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return self._objective.greedy_decode(log_probs, lengths)


DECODERS = {"greedy": GreedyCtcDecoder}


def build_decoder(cfg: DecodeConfig) -> CtcDecoder:
    if cfg.method not in DECODERS:
        raise AsrktError(f"unknown decoding method '{cfg.method}' (known: {', '.join(DECODERS)})")
    return DECODERS[cfg.method](blank=cfg.blank)


def model_log_probs(model, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-softmax of the model's logits (B, T', C) in float32, out_lengths (B,) on the CPU)."""
    logits, out_lengths = model(feats, lengths)
    return F.log_softmax(logits.float(), dim=-1), out_lengths.cpu()


def decode_batches(model, batches: Iterable, decoder: CtcDecoder, device: torch.device,
                   progress: Progress | None = None) -> Iterator[tuple[str, list[int]]]:
    """Yield ``(utt, token ids)`` for every utterance of ``batches``.

    A batch has ``utts``, ``feats`` (B, T, D) and ``lengths`` (B,) (:class:`asrkt.data.dataset.Batch`, from
    :func:`asrkt.decode.batches.inference_loader`). Forward in eval mode under ``torch.inference_mode``.
    """
    model.eval()
    with torch.inference_mode():
        for batch in batches:
            log_probs, out_lengths = model_log_probs(model, batch.feats.to(device, non_blocking=True),
                                                     batch.lengths.to(device))
            hyps = decoder.decode(log_probs, out_lengths)
            if progress is not None:
                progress.update(len(batch.utts), int(batch.lengths.sum()))
            yield from zip(batch.utts, hyps)
