"""The model-side half of decoding, the same for every objective: batches -> log-probabilities -> the objective's
decoder (:meth:`asrkt.targets.Objective.build_decoder`) -> text per utterance.

A decoder is any object with ``decode(log_probs (B, T, C), lengths (B,)) -> list[str]``. CTC's greedy search
lives with the CTC objective (:mod:`asrkt.targets.ctc`); a prefix beam search with an LM, or WFST decoding for
the hybrid objective, is another decoder of its objective, with its options in :class:`DecodeConfig`.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from asrkt.utils.progress import Progress

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DecodeConfig:
    # the objective's decoder: ctc has "greedy" and "tlg" (with an n-gram LM); frame_ce has "hclg" (and takes
    # "greedy" as it)
    method: str = "greedy"
    batch_frames: int = 20000  # input frames per batch (padding included)
    device: str = "auto"  # auto: cuda when available, else cpu
    # hclg (frame_ce, hybrid): WFST search of (log-posterior - log-prior) * acoustic_scale on the HCLG graph
    acoustic_scale: float = 0.1  # the inverse LM weight (Kaldi nnet1's decode.sh acwt 0.1); tune on dev only
    beam: float = 13.0  # search beam (Kaldi's default)
    # Only the best path is output, so the lattice beam buys nothing; with Kaldi's 8 and 7000 active states an
    # AN4 DNN teacher decoded at acoustic scale 0.067 ran at real-time factor 0.39 on one busy core, with 2 and
    # 2000 at 0.096, same words (8 dev utterances).
    lattice_beam: float = 2.0
    max_active: int = 2000  # most active states per frame
    graph: str = ""  # WFST decoders: the graph dir to search (empty: the objective's own, e.g. hybrid.yaml's graph)


def model_log_probs(model, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-softmax of the model's logits (B, T', C) in float32, out_lengths (B,) on the CPU)."""
    logits, out_lengths = model(feats, lengths)
    return F.log_softmax(logits.float(), dim=-1), out_lengths.cpu()


def decode_batches(model, batches: Iterable, decoder, device: torch.device,
                   progress: Progress | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(utt, text)`` for every utterance of ``batches``.

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
