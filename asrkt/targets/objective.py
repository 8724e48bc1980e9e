"""The training objective as a component: what targets a data dir yields, the output size, the loss, the dev
metric and the decoder of stage 7.

An objective is built from its name and a *targets dir* (the tokenizer's lang dir for CTC, the alignment dir for
frame-level targets) by :func:`build_objective`. The trainer, the teacher gate and the decoder use only this
interface, so a new objective is one module that subclasses :class:`Objective` and calls
:func:`register_objective`; see ``docs/extending.md``.

Targets reach a batch through a :class:`TargetSource` (one per data dir): it checks that every utterance has a
usable target (errors name the file and the utterance), returns one utterance's target and pads a list of them
into what :meth:`Objective.loss` takes.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import ClassVar

import torch

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


class TargetSource:
    """The hard targets of one data dir, keyed by utterance. Subclasses fill ``self.targets`` (utt -> target)
    in ``__init__`` and may override :meth:`collate`."""

    def __init__(self):
        self.targets: dict[str, object] = {}

    def __getitem__(self, utt: str):
        return self.targets[utt]

    def __contains__(self, utt: str) -> bool:
        return utt in self.targets

    @staticmethod
    def collate(items: list):
        """A batch of targets, as :meth:`Objective.loss` and :meth:`Objective.errors` take them."""
        return list(items)


class Objective:
    """Base class. Class attributes name the objective, its hard loss term and its dev metric.

    ``targets_dir``: where the objective's targets live (None: only the parts that need no targets work, e.g.
    ``loss`` on given targets in tests).
    """

    name: ClassVar[str] = ""
    #: The loss term (:mod:`asrkt.train.terms`) that trains on this objective's targets.
    hard_term: ClassVar[str] = ""
    #: Short name of the dev metric: summary.tsv column ``valid_<metric>``; lower is better, in %.
    metric: ClassVar[str] = ""
    metric_label: ClassVar[str] = ""

    def __init__(self, targets_dir=None):
        self.targets_dir = Path(targets_dir) if targets_dir else None
        self.last_stats = ObjectiveStats()

    def _need_targets_dir(self) -> Path:
        if self.targets_dir is None:
            raise AsrktError(f"the {self.name} objective needs its targets dir (--targets-dir / --lang-dir)")
        return self.targets_dir

    # --------------------------------------------------------------------------------- to be implemented
    @property
    def num_classes(self) -> int:
        """The model's output dimension."""
        raise NotImplementedError

    def target_source(self, data_dir, utts: list[str], subsampling: int = 1) -> TargetSource:
        """The targets of ``utts`` of ``data_dir``, at the model's output frame rate (``subsampling``)."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, out_lengths: torch.Tensor, targets, utt_ids=None) -> torch.Tensor:
        """Summed loss over the batch; sets ``last_stats`` (its ``frames`` normalise the per-frame loss)."""
        raise NotImplementedError

    def errors(self, logits: torch.Tensor, out_lengths: torch.Tensor, targets) -> tuple[int, int]:
        """(errors, reference units) of a quick hypothesis, for the dev metric 100 * errors / units."""
        raise NotImplementedError

    def build_decoder(self, cfg):
        """The stage-7 decoder for :class:`asrkt.decode.ctc.DecodeConfig` ``cfg``: an object with
        ``decode(log_probs (B, T, C), lengths (B,)) -> list[str]`` (text per utterance)."""
        raise AsrktError(f"the {self.name} objective has no decoder yet")

    def check_train_data(self, data_dir) -> None:
        """Warn about targets made for other training data (e.g. a tokenizer trained on other text)."""

    def degenerate(self, logits: torch.Tensor, out_lengths: torch.Tensor) -> str | None:
        """Why these outputs are degenerate (e.g. CTC blanks only), or None; used by the teacher gate."""
        return None

    def describe(self) -> str:
        return f"{self.name} ({self.num_classes} classes from {self.targets_dir})"


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` buildable by its ``name`` (``objective: <name>`` in a train config)."""
    if not cls.name or not cls.hard_term or not cls.metric:
        raise TypeError(f"{cls.__name__} must set name, hard_term and metric")
    _OBJECTIVES[cls.name] = cls
    return cls


def objective_names() -> list[str]:
    return sorted(_OBJECTIVES)


def build_objective(name: str, targets_dir=None, **kwargs) -> Objective:
    """The objective called ``name`` over ``targets_dir``; keyword arguments go to its constructor."""
    if name not in _OBJECTIVES:
        raise AsrktError(f"unknown training objective {name!r} (known: {', '.join(objective_names())})")
    return _OBJECTIVES[name](targets_dir=targets_dir, **kwargs)
