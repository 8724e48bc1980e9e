"""Loss terms: the pieces whose weighted sum is the training loss.

A term has a ``name`` (its column in summary.tsv, progress lines, curves and result records), a ``weight``, the
``inputs`` it needs and its own options. Per batch it returns ``(sum, count)``: a loss summed over ``count``
units (frames, usually); the trainer keeps the sums and counts apart per term, so the epoch value of a term is
``sum / count`` over the whole epoch, and the loss of record is ``sum_i weight_i * sum_i / count_i``.

Inputs a term may declare (the trainer loads only what the active terms ask for):

``hard_targets``        the objective's targets (token sequences, frame class ids): ``batch.inputs``
``teacher_posteriors``  dumped teacher posteriors, dense or top-k (:class:`TeacherTargets`): ``batch.inputs``
``student_hidden``      every hidden layer's output of the student (``out.hidden``, input side first)
``teacher_forward``     an on-the-fly teacher model's logits and hidden layers (``out.teacher``, no gradient;
                        give the trainer ``teacher_model``)

Registered here: ``ctc`` and ``ce`` (the objective's hard loss), ``kd`` (soft targets, dense or top-k as the
dump says), ``kd_dense`` and ``kd_topk``. A new term: subclass :class:`LossTerm`, decorate it with
:func:`register_term`, name it in ``loss.terms`` of a train config (see ``docs/extending.md``).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from asrkt.utils.config import from_dict
from asrkt.utils.errors import AsrktError
from asrkt.utils.registry import lookup_spec

HARD_TARGETS = "hard_targets"
TEACHER_POSTERIORS = "teacher_posteriors"
STUDENT_HIDDEN = "student_hidden"
TEACHER_FORWARD = "teacher_forward"
INPUTS = (HARD_TARGETS, TEACHER_POSTERIORS, STUDENT_HIDDEN, TEACHER_FORWARD)


@dataclasses.dataclass
class ModelOutput:
    """One forward pass: logits (B, T', C), out_lengths (B,), and when asked for, the hidden layers' outputs
    and the on-the-fly teacher's own ModelOutput."""

    logits: torch.Tensor
    out_lengths: torch.Tensor
    hidden: list[torch.Tensor] | None = None
    teacher: "ModelOutput | None" = None

    def mask(self, max_len: int | None = None) -> torch.Tensor:
        """(B, T) bool: frames within each utterance's output length."""
        T = self.logits.shape[1] if max_len is None else max_len
        return torch.arange(T, device=self.logits.device).unsqueeze(0) < \
            self.out_lengths.to(self.logits.device).unsqueeze(1)


@dataclasses.dataclass
class NoOptions:
    pass


class LossTerm:
    """Base class: set ``name``, ``inputs`` (from :data:`INPUTS`) and ``Options`` (a dataclass), implement
    :meth:`__call__`. ``setup`` runs once the trainer has its model, data and objective."""

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    # True when the value is not a sum over utterances but couples those of a batch (e.g. PKT's similarities
    # between all its frames): data-parallel ranks then compute it over their share of each batch.
    batch_coupled: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0, options=None):
        if not weight > 0:
            raise AsrktError(f"loss term '{self.name}': weight must be > 0, got {weight}")
        self.weight = float(weight)
        self.options = options if options is not None else self.Options()

    def setup(self, trainer) -> None:
        """Check the term fits the run (objective, model, posteriors); AsrktError if not."""

    def __call__(self, out: ModelOutput, batch) -> tuple[torch.Tensor | None, int]:
        raise NotImplementedError

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(self.options).items())
        return f"{self.weight:g} x {self.name}" + (f" ({opts})" if opts else "")


_TERMS: dict[str, type[LossTerm]] = {}


def register_term(cls: type[LossTerm]) -> type[LossTerm]:
    """Class decorator: make ``cls`` usable as ``{name: <cls.name>, weight: w, ...options}`` in ``loss.terms``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} must set a name")
    unknown = [i for i in cls.inputs if i not in INPUTS]
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown inputs {unknown} (known: {', '.join(INPUTS)})")
    _TERMS[cls.name] = cls
    return cls


def term_names() -> list[str]:
    return sorted(_TERMS)


def build_term(spec: dict, defaults: dict | None = None) -> LossTerm:
    """A term from ``{name: ..., weight: ..., <options>}``; ``defaults`` fill options the spec leaves out
    (only those the term has)."""
    name, cls, spec = lookup_spec(spec, _TERMS, "loss.terms", "loss term")
    weight = spec.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise AsrktError(f"loss.terms: '{name}' weight must be a number, got {weight!r}")
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    options = {k: v for k, v in (defaults or {}).items() if k in fields}
    options.update(spec)
    return cls(float(weight), from_dict(cls.Options, options, source=f"loss.terms '{name}'"))


# ------------------------------------------------------------------------------------------ built-in terms
class HardTargetTerm(LossTerm):
    """The objective's own loss on its targets, per output frame of the utterances it covers."""

    inputs = (HARD_TARGETS,)
    objective_name: ClassVar[str] = ""

    def setup(self, trainer) -> None:
        if trainer.objective is None or trainer.objective.name != self.objective_name:
            have = trainer.objective.name if trainer.objective is not None else "none"
            raise AsrktError(f"loss term '{self.name}' trains on {self.objective_name} targets, but the objective "
                             f"is {have}; use the term '{trainer.objective.hard_term if trainer.objective else '?'}'")
        self.objective = trainer.objective

    def __call__(self, out, batch):
        loss = self.objective.loss(out.logits, out.out_lengths, batch.inputs[HARD_TARGETS], batch.utts)
        return loss, self.objective.last_stats.frames


@register_term
class CtcTerm(HardTargetTerm):
    name = "ctc"
    objective_name = "ctc"


@register_term
class FrameCeTerm(HardTargetTerm):
    name = "ce"
    objective_name = "frame_ce"


@dataclasses.dataclass
class KdOptions:
    temperature: float = 1.0  # T of the soft-target KL, which is scaled by T^2
    backend: str = "auto"  # asrkt.kernels: auto (triton on CUDA, else reference) | reference | triton


@dataclasses.dataclass
class TeacherTargets:
    """Teacher posteriors of a batch, padded to the longest teacher sequence; ``mask`` (B, T') marks real
    frames. Dense: ``dense`` (B, T', C) log-probs; top-k: ``indices`` (B, T', k) and ``values`` (B, T', k)."""

    mask: torch.Tensor
    dense: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    values: torch.Tensor | None = None

    @property
    def sparse(self) -> bool:
        return self.indices is not None

    @staticmethod
    def collate(items: list) -> "TeacherTargets":
        """Pad per-utterance targets: dense (T', C) tensors, or top-k (indices (T', k), values (T', k)) pairs
        (padding frames: index 0, value 0, masked out)."""
        from torch.nn.utils.rnn import pad_sequence

        if isinstance(items[0], tuple):
            n = [int(s[0].shape[0]) for s in items]
            out = {"indices": pad_sequence([s[0] for s in items], batch_first=True),
                   "values": pad_sequence([s[1] for s in items], batch_first=True)}
        else:
            n = [int(s.shape[0]) for s in items]
            out = {"dense": pad_sequence(items, batch_first=True)}
        lengths = torch.tensor(n, dtype=torch.long)
        return TeacherTargets(mask=torch.arange(max(n)).unsqueeze(0) < lengths.unsqueeze(1), **out)

    def to(self, device, non_blocking: bool = True) -> "TeacherTargets":
        return TeacherTargets(**{f.name: (None if getattr(self, f.name) is None else
                                          getattr(self, f.name).to(device, non_blocking=non_blocking))
                                 for f in dataclasses.fields(self)})


class KdTerm(LossTerm):
    """T^2 * KL(p_T || q_T) between dumped teacher posteriors and the student, summed over the frames valid for
    both, count = those frames. ``kd`` accepts either dump kind; ``kd_dense``/``kd_topk`` insist on one."""

    inputs = (TEACHER_POSTERIORS,)
    Options = KdOptions
    requires: ClassVar[str | None] = None  # "dense" | "topk" | None (either)

    def setup(self, trainer) -> None:
        from asrkt.kernels import BACKENDS

        o = self.options
        if not o.temperature > 0:
            raise AsrktError(f"loss term '{self.name}': temperature must be > 0, got {o.temperature}")
        if o.backend not in BACKENDS:
            raise AsrktError(f"loss term '{self.name}': backend must be one of {', '.join(BACKENDS)}, got "
                             f"'{o.backend}'")
        sparse = trainer.teacher_posteriors_sparse
        if self.requires is not None and sparse != (self.requires == "topk"):
            kind = "top-k" if sparse else "dense"
            raise AsrktError(f"loss term '{self.name}' needs {self.requires} posteriors but {trainer.train_post} "
                             f"holds {kind} ones: use the term 'kd' (either kind)")

    def __call__(self, out, batch):
        from asrkt.kernels import kd_loss, kd_loss_sparse

        teacher: TeacherTargets = batch.inputs[TEACHER_POSTERIORS]
        T = min(out.logits.shape[1], teacher.mask.shape[1])
        mask = out.mask(T) & teacher.mask[:, :T]
        student = out.logits[:, :T][mask]
        o = self.options
        if teacher.sparse:
            loss = kd_loss_sparse(student, teacher.indices[:, :T][mask], teacher.values[:, :T][mask],
                                  o.temperature, reduction="sum", backend=o.backend)
        else:
            loss = kd_loss(student, teacher.dense[:, :T][mask], o.temperature, reduction="sum", backend=o.backend)
        return loss, int(student.shape[0])


@register_term
class AnyKdTerm(KdTerm):
    name = "kd"


@register_term
class DenseKdTerm(KdTerm):
    name = "kd_dense"
    requires = "dense"


@register_term
class TopkKdTerm(KdTerm):
    name = "kd_topk"
    requires = "topk"
