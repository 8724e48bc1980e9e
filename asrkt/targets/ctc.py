"""The CTC training objective and greedy CTC decoding."""
from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F

from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ObjectiveStats:
    """What the last ``loss`` call summed over; trainers accumulate these for their progress lines.

    ``units`` is what a per-unit loss is normalised by: target tokens for CTC, frames for frame-level CE.
    ``skipped`` counts utterances left out of the loss (CTC: target longer than the output allows).
    """
    utterances: int = 0
    frames: int = 0
    units: int = 0
    skipped: int = 0

    def __iadd__(self, other: "ObjectiveStats") -> "ObjectiveStats":
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def min_ctc_frames(target) -> int:
    """The fewest output frames CTC needs for ``target``: one per token plus a blank between repeats."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


class CtcObjective:
    """CTC over class ids with ``blank`` (0) as the blank; targets are token-id sequences (ids >= 1).

    Infeasible utterances (fewer output frames than :func:`min_ctc_frames`, e.g. a too-aggressive
    subsampling) are left out of the loss rather than trained on an infinite loss: they are counted in
    ``last_stats.skipped`` and the running ``num_infeasible``, and the first few are logged by name.
    """

    name = "ctc"
    #: What ``loss`` expects as targets: one token-id list per utterance.
    targets_kind = "tokens"
    _MAX_WARNINGS = 5

    def __init__(self, blank: int = 0):
        self.blank = blank
        self.last_stats = ObjectiveStats()
        self.num_infeasible = 0

    def loss(self, logits: torch.Tensor, out_lengths: torch.Tensor, targets: list[list[int]],
             utt_ids: list[str] | None = None) -> torch.Tensor:
        """Summed CTC loss (float32) over the batch. ``logits`` (B, T, C), ``out_lengths`` (B,);
        ``utt_ids`` only names utterances in errors and warnings."""
        B, T, C = logits.shape
        if len(targets) != B:
            raise AsrktError(f"{len(targets)} target sequences for a batch of {B} utterances")
        out_lengths = torch.as_tensor(out_lengths, dtype=torch.long).cpu()  # ctc_loss reads lengths on the CPU
        lens = out_lengths.tolist()
        name = (lambda b: f"utterance '{utt_ids[b]}'") if utt_ids else (lambda b: f"batch item {b}")
        feasible, infeasible = [], []
        for b, target in enumerate(targets):
            bad = [i for i in target if not (0 <= i < C) or i == self.blank]
            if bad:
                raise AsrktError(f"{name(b)}: target id {bad[0]} is the blank or outside [1, {C}) "
                                 f"for a {C}-class model")
            (feasible if min_ctc_frames(target) <= lens[b] else infeasible).append(b)
        if infeasible:
            self.num_infeasible += len(infeasible)
            if self.num_infeasible - len(infeasible) < self._MAX_WARNINGS:
                logger.warning("CTC: skipping %d infeasible utterance(s) (target longer than output): %s%s",
                               len(infeasible), ", ".join(f"{name(b)} ({len(targets[b])} tokens, {lens[b]} "
                                                          f"frames)" for b in infeasible[:3]),
                               "" if self.num_infeasible < self._MAX_WARNINGS else
                               "; further ones are only counted")
        self.last_stats = ObjectiveStats(
            utterances=len(feasible), frames=sum(lens[b] for b in feasible),
            units=sum(len(targets[b]) for b in feasible), skipped=len(infeasible))
        if not feasible:
            return logits.float().sum() * 0.0  # keeps the graph, so backward() works on an all-bad batch
        idx = torch.tensor(feasible, dtype=torch.long, device=logits.device)
        log_probs = F.log_softmax(logits.index_select(0, idx).float(), dim=-1).transpose(0, 1)  # (T, B', C)
        flat = torch.tensor([i for b in feasible for i in targets[b]], dtype=torch.long, device=logits.device)
        target_lengths = torch.tensor([len(targets[b]) for b in feasible], dtype=torch.long)
        return F.ctc_loss(log_probs, flat, out_lengths[feasible], target_lengths, blank=self.blank,
                          reduction="sum", zero_infinity=True)

    def greedy_decode(self, logits: torch.Tensor, out_lengths: torch.Tensor) -> list[list[int]]:
        """Best path: argmax per frame, collapse repeats, drop blanks."""
        best = logits.argmax(-1).cpu()
        result = []
        for b, n in enumerate(torch.as_tensor(out_lengths).tolist()):
            path = torch.unique_consecutive(best[b, :n])
            result.append(path[path != self.blank].tolist())
        return result
