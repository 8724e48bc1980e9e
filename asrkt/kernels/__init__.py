"""Fused soft-target (KD) loss kernels behind one dispatcher, each with a pure-PyTorch reference.

Backends:
  ``reference``  pure PyTorch, any device: :func:`asrkt.losses.kd.kd_loss_reference` and friends (the
                 loss of record), and a chunked PyTorch twin of the fused output layer.
  ``triton``     the Triton kernels of :mod:`asrkt.kernels.triton_kd`: CUDA tensors, or CPU tensors when
                 ``TRITON_INTERPRET=1`` was set before triton was imported (slow; for tests).
  ``auto``       ``triton`` for CUDA tensors when triton is installed, ``reference`` otherwise.

Every entry point validates its inputs before any kernel launch and raises :class:`AsrktError` with one
clear line: mismatched shapes, out-of-range top-k indices, a non-positive temperature, NaN/inf in the
teacher targets, wrong dtypes, empty input.

Public API::

    kd_loss(student_logits, teacher, temperature=1.0, mask=None, alpha=1.0, reduction="mean", backend="auto")
    kd_loss_sparse(student_logits, indices, values, temperature=1.0, mask=None, alpha=1.0,
                   reduction="mean", backend="auto")
    fused_linear_kd_loss(hidden, weight, bias, teacher=None, indices=None, values=None, temperature=1.0,
                         mask=None, alpha=1.0, reduction="mean", chunk_frames=None, backend="auto")
    topk_log_probs(teacher, k, backend="auto")
    select_kd_loss(backend) / select_kd_loss_sparse(backend) -> callables with the reference signatures
"""
from __future__ import annotations

import functools
import logging
import math

import torch

from asrkt.kernels import reference
from asrkt.kernels.functions import DenseKDFunction, FusedLinearKDFunction, SparseKDFunction
from asrkt.losses.kd import kd_loss_reference, kd_loss_sparse_reference
from asrkt.losses.kd import topk_log_probs as topk_log_probs_reference
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "triton")
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
REFERENCE_DTYPES = KERNEL_DTYPES + (torch.float64,)
#: Logits elements per chunk of the fused output layer when ``chunk_frames`` is not given (32 MiB fp32).
FUSED_CHUNK_ELEMENTS = 1 << 23

__all__ = ["kd_loss", "kd_loss_sparse", "fused_linear_kd_loss", "topk_log_probs", "select_kd_loss",
           "select_kd_loss_sparse", "resolve_backend", "BACKENDS"]


# ------------------------------------------------------------------------------------------- backends
@functools.lru_cache(maxsize=1)
def _triton_ops():
    """The Triton ops module, or None when triton cannot be imported."""
    try:
        from asrkt.kernels import triton_kd
    except ImportError as e:  # triton absent (e.g. macOS) or broken
        logger.debug("triton unavailable: %s", e)
        return None
    return triton_kd


def _shape(x: torch.Tensor) -> tuple:
    return tuple(x.shape)


def resolve_backend(backend: str, tensors, name: str) -> str:
    """``reference`` or ``triton`` for these tensors; AsrktError when ``triton`` cannot run them."""
    if backend not in BACKENDS:
        raise AsrktError(f"{name}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    tensors = [t for t in tensors if t is not None]
    on_cuda = all(t.is_cuda for t in tensors)
    floats_ok = all(t.dtype in KERNEL_DTYPES for t in tensors if t.is_floating_point())
    if backend == "reference":
        return "reference"
    if backend == "auto":
        return "triton" if on_cuda and floats_ok and _triton_ops() is not None else "reference"
    ops = _triton_ops()
    if ops is None:
        raise AsrktError(f"{name}: backend 'triton' asked for but triton cannot be imported; "
                         "install triton or use backend 'reference'")
    if not on_cuda and not ops.interpreted():
        raise AsrktError(f"{name}: backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 set before "
                         "triton is first imported (or use backend 'reference' on CPU)")
    if not floats_ok:
        bad = sorted({str(t.dtype) for t in tensors if t.is_floating_point() and t.dtype not in KERNEL_DTYPES})
        raise AsrktError(f"{name}: the triton backend takes float32, bfloat16 or float16 tensors, got "
                         f"{', '.join(bad)}; use backend 'reference' for float64")
    return "triton"


# ----------------------------------------------------------------------------------------- validation
def _check_scalars(name: str, temperature, reduction: str, allowed=("mean", "sum", "none")) -> None:
    try:
        ok = math.isfinite(float(temperature)) and float(temperature) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AsrktError(f"{name}: temperature must be a finite number > 0, got {temperature!r}")
    if reduction not in allowed:
        raise AsrktError(f"{name}: reduction must be one of {', '.join(allowed)}, got {reduction!r}")


def _check_float(name: str, what: str, x: torch.Tensor) -> None:
    if x.dtype not in REFERENCE_DTYPES:
        raise AsrktError(f"{name}: {what} must be float32, bfloat16, float16 or float64, got {x.dtype}")


def _check_device(name: str, pairs) -> None:
    devices = {(what, t.device) for what, t in pairs if t is not None}
    if len({d for _, d in devices}) > 1:
        raise AsrktError(f"{name}: tensors on different devices: "
                         + ", ".join(f"{what} on {d}" for what, d in sorted(devices, key=str)))


def _check_logits(name: str, what: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise AsrktError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise AsrktError(f"{name}: {what} must be (frames, classes) (or (..., classes)), got shape {_shape(x)}")
    _check_float(name, what, x)
    if x.numel() == 0:
        raise AsrktError(f"{name}: empty input: {what} has shape {_shape(x)} (no frames or no classes)")


def _first_bad(bad: torch.Tensor) -> str:
    pos = bad.nonzero()[0].tolist()
    return f"{int(bad.sum())} entries, first at index {tuple(pos)}"


def _check_finite_teacher(name: str, teacher: torch.Tensor) -> None:
    if not bool(torch.isfinite(teacher).all()):
        raise AsrktError(f"{name}: teacher targets contain NaN or inf ({_first_bad(~torch.isfinite(teacher))})")


def _check_mask(name: str, mask: torch.Tensor | None, frames_shape: tuple) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise AsrktError(f"{name}: mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise AsrktError(f"{name}: mask must be bool or floating point, got {mask.dtype}")
    if _shape(mask) != tuple(frames_shape):
        raise AsrktError(f"{name}: mask has shape {_shape(mask)} but the frames have shape {tuple(frames_shape)}")


def _check_topk(name: str, indices: torch.Tensor, values: torch.Tensor, frames_shape: tuple,
                num_classes: int) -> None:
    for what, x in (("top-k indices", indices), ("top-k values", values)):
        if not isinstance(x, torch.Tensor):
            raise AsrktError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
    if indices.dtype != torch.int64:
        raise AsrktError(f"{name}: top-k indices must be int64, got {indices.dtype}")
    _check_float(name, "top-k values", values)
    if _shape(indices) != _shape(values) or _shape(indices)[:-1] != tuple(frames_shape):
        raise AsrktError(f"{name}: top-k indices {_shape(indices)} and values {_shape(values)} must both be "
                         f"(frames, k) with frames {tuple(frames_shape)}")
    if indices.shape[-1] == 0:
        raise AsrktError(f"{name}: empty input: top-k targets have k = 0")
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= num_classes:
        bad = (indices < 0) | (indices >= num_classes)
        raise AsrktError(f"{name}: top-k class indices must lie in [0, {num_classes}), got values in "
                         f"[{lo}, {hi}] ({_first_bad(bad)})")
    # -inf marks padding; anything else must be finite.
    bad = ~torch.isfinite(values) & (values != float("-inf"))
    if bool(bad.any()):
        raise AsrktError(f"{name}: teacher top-k values contain NaN or +inf ({_first_bad(bad)})")


def _frame_weights(mask: torch.Tensor | None, n: int, reduction: str, dtype, device) -> torch.Tensor:
    """Per-frame factor of the reduction, as in asrkt.losses.kd._reduce: mask / max(sum(mask), 1) for
    mean, mask for sum and none (all ones without a mask)."""
    w = mask.reshape(n).to(dtype) if mask is not None else torch.ones(n, dtype=dtype, device=device)
    if reduction == "mean":
        count = w.sum().clamp(min=1) if mask is not None else torch.tensor(float(n), dtype=dtype, device=device)
        w = w / count
    return w


# ------------------------------------------------------------------------------------------ the losses
def kd_loss(student_logits: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
            mask: torch.Tensor | None = None, alpha: float = 1.0, reduction: str = "mean",
            backend: str = "auto") -> torch.Tensor:
    """alpha * T^2 * KL(p_T || q_T), reduced over frames, as :func:`asrkt.losses.kd.kd_loss_reference`.

    ``student_logits``, ``teacher``: (..., classes), the teacher as logits or log-probabilities;
    ``mask``: (...,) bool or float frame weights; ``reduction``: mean (over unmasked frames), sum or none.
    The triton backend differentiates the student and (if it requires grad) the teacher.
    """
    name = "kd_loss"
    _check_scalars(name, temperature, reduction)
    _check_logits(name, "student logits", student_logits)
    if not isinstance(teacher, torch.Tensor):
        raise AsrktError(f"{name}: teacher targets must be a torch.Tensor, got {type(teacher).__name__}")
    _check_float(name, "teacher targets", teacher)
    if _shape(student_logits) != _shape(teacher):
        raise AsrktError(f"{name}: student logits {_shape(student_logits)} and teacher targets "
                         f"{_shape(teacher)} differ in shape")
    _check_mask(name, mask, student_logits.shape[:-1])
    _check_device(name, [("student logits", student_logits), ("teacher targets", teacher), ("mask", mask)])
    if resolve_backend(backend, [student_logits, teacher], name) == "reference":
        # Any NaN/inf in the teacher makes the loss NaN, so the full scan of the teacher runs only then:
        # this keeps the reference path as fast as eager PyTorch.
        loss = kd_loss_reference(student_logits, teacher, temperature, mask, alpha, reduction)
        if not bool(torch.isfinite(loss).all()):
            _check_finite_teacher(name, teacher)
        return loss
    _check_finite_teacher(name, teacher)
    frames_shape = student_logits.shape[:-1]
    c = student_logits.shape[-1]
    n = student_logits.numel() // c
    w = _frame_weights(mask, n, reduction, torch.float32, student_logits.device)
    out = DenseKDFunction.apply(student_logits.reshape(n, c), teacher.reshape(n, c), w, float(temperature),
                                float(alpha), reduction == "none", _triton_ops())
    return out.reshape(frames_shape) if reduction == "none" else out


def kd_loss_sparse(student_logits: torch.Tensor, indices: torch.Tensor, values: torch.Tensor,
                   temperature: float = 1.0, mask: torch.Tensor | None = None, alpha: float = 1.0,
                   reduction: str = "mean", backend: str = "auto") -> torch.Tensor:
    """The loss from top-k teacher targets, as :func:`asrkt.losses.kd.kd_loss_sparse_reference`.

    ``indices``: (..., k) int64 class ids; ``values``: (..., k) teacher log-probabilities at T=1 with
    -inf padding (a Kaldi Posterior after log). The teacher is never densified.
    """
    name = "kd_loss_sparse"
    _check_scalars(name, temperature, reduction)
    _check_logits(name, "student logits", student_logits)
    frames_shape = student_logits.shape[:-1]
    c = student_logits.shape[-1]
    _check_topk(name, indices, values, frames_shape, c)
    _check_mask(name, mask, frames_shape)
    _check_device(name, [("student logits", student_logits), ("top-k indices", indices),
                         ("top-k values", values), ("mask", mask)])
    if resolve_backend(backend, [student_logits, values], name) == "reference":
        return kd_loss_sparse_reference(student_logits, indices, values, temperature, mask, alpha, reduction)
    if values.requires_grad:
        raise AsrktError(f"{name}: the triton backend does not differentiate the teacher top-k values; "
                         "detach them")
    n, k = student_logits.numel() // c, indices.shape[-1]
    w = _frame_weights(mask, n, reduction, torch.float32, student_logits.device)
    out = SparseKDFunction.apply(student_logits.reshape(n, c), indices.reshape(n, k), values.reshape(n, k), w,
                                 float(temperature), float(alpha), reduction == "none", _triton_ops())
    return out.reshape(frames_shape) if reduction == "none" else out


def fused_linear_kd_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         teacher: torch.Tensor | None = None, indices: torch.Tensor | None = None,
                         values: torch.Tensor | None = None, temperature: float = 1.0,
                         mask: torch.Tensor | None = None, alpha: float = 1.0, reduction: str = "mean",
                         chunk_frames: int | None = None, backend: str = "auto") -> torch.Tensor:
    """KD loss of the output layer ``hidden @ weight.T + bias`` without storing all student logits.

    ``hidden``: (..., H); ``weight``: (C, H); ``bias``: (C,) or None (the student's ``output_layer``
    applied to ``forward_hidden``). Teacher targets: dense ``teacher`` (..., C) or top-k ``indices`` and
    ``values`` (..., k). Reduction mean or sum. Frames are processed ``chunk_frames`` at a time (default:
    about 8M logits per chunk). Gradients flow to hidden, weight and bias; the reference backend runs
    the same chunked algorithm in PyTorch.
    """
    name = "fused_linear_kd_loss"
    _check_scalars(name, temperature, reduction, allowed=("mean", "sum"))
    for what, x in (("hidden", hidden), ("weight", weight)):
        if not isinstance(x, torch.Tensor):
            raise AsrktError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
        _check_float(name, what, x)
    if hidden.dim() < 2 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise AsrktError(f"{name}: hidden must be (frames, H) and weight (classes, H); got hidden "
                         f"{_shape(hidden)} and weight {_shape(weight)}")
    if hidden.numel() == 0 or weight.numel() == 0:
        raise AsrktError(f"{name}: empty input: hidden {_shape(hidden)}, weight {_shape(weight)}")
    c, h_dim = weight.shape
    if bias is not None and (not isinstance(bias, torch.Tensor) or _shape(bias) != (c,)):
        raise AsrktError(f"{name}: bias must be ({c},) to match weight {_shape(weight)}, got "
                         f"{_shape(bias) if isinstance(bias, torch.Tensor) else type(bias).__name__}")
    dtypes = {hidden.dtype, weight.dtype} | ({bias.dtype} if bias is not None else set())
    if len(dtypes) > 1:
        raise AsrktError(f"{name}: hidden, weight and bias must share one dtype, got "
                         f"{', '.join(sorted(str(d) for d in dtypes))}")
    frames_shape = hidden.shape[:-1]
    if (teacher is None) == (indices is None and values is None) or (indices is None) != (values is None):
        raise AsrktError(f"{name}: give either dense teacher targets or both top-k indices and values")
    if teacher is not None:
        if not isinstance(teacher, torch.Tensor):
            raise AsrktError(f"{name}: teacher targets must be a torch.Tensor, got {type(teacher).__name__}")
        _check_float(name, "teacher targets", teacher)
        if _shape(teacher) != tuple(frames_shape) + (c,):
            raise AsrktError(f"{name}: teacher targets {_shape(teacher)} do not match the student logits "
                             f"{tuple(frames_shape) + (c,)} (hidden {_shape(hidden)}, weight {_shape(weight)})")
        _check_finite_teacher(name, teacher)
        if teacher.requires_grad:
            raise AsrktError(f"{name}: the teacher targets are not differentiated here; detach them")
    else:
        _check_topk(name, indices, values, frames_shape, c)
        if values.requires_grad:
            raise AsrktError(f"{name}: the teacher top-k values are not differentiated here; detach them")
    _check_mask(name, mask, frames_shape)
    _check_device(name, [("hidden", hidden), ("weight", weight), ("bias", bias), ("teacher targets", teacher),
                         ("top-k indices", indices), ("top-k values", values), ("mask", mask)])
    if chunk_frames is not None and (not isinstance(chunk_frames, int) or chunk_frames < 1):
        raise AsrktError(f"{name}: chunk_frames must be a positive integer, got {chunk_frames!r}")
    use = resolve_backend(backend, [hidden, weight, bias, teacher, values], name)
    ops = _triton_ops() if use == "triton" else reference
    n = hidden.numel() // h_dim
    chunk = chunk_frames or max(1, FUSED_CHUNK_ELEMENTS // c)
    w = _frame_weights(mask, n, reduction, reference.compute_dtype(hidden.dtype), hidden.device)
    return FusedLinearKDFunction.apply(
        hidden.reshape(n, h_dim), weight, bias,
        teacher.reshape(n, c) if teacher is not None else None,
        indices.reshape(n, -1) if indices is not None else None,
        values.reshape(n, -1) if values is not None else None,
        w, float(temperature), float(alpha), chunk, ops)


def topk_log_probs(teacher: torch.Tensor, k: int, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The k most probable classes per frame, for the dump stage: (indices int64 (..., k'), log-probs at
    T=1 float32 (..., k')), largest first, k' = min(k, classes). As :func:`asrkt.losses.kd.topk_log_probs`.

    The triton backend fuses log-softmax and top-k in one pass for k <= 64 and falls back to the
    reference (torch.topk) above that.
    """
    name = "topk_log_probs"
    _check_logits(name, "teacher outputs", teacher)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise AsrktError(f"{name}: k must be a positive integer, got {k!r}")
    _check_finite_teacher(name, teacher)
    use = resolve_backend(backend, [teacher], name)
    if use == "reference" or k > _triton_ops().MAX_TOPK:
        return topk_log_probs_reference(teacher, k)
    c = teacher.shape[-1]
    frames_shape = teacher.shape[:-1]
    idx, val = _triton_ops().topk_log_probs(teacher.reshape(-1, c), k)
    kk = idx.shape[-1]
    return idx.reshape(*frames_shape, kk), val.reshape(*frames_shape, kk)


# -------------------------------------------------------------------------------------- trainer wiring
def _check_backend_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise AsrktError(f"loss.kd_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def select_kd_loss(backend: str):
    """A callable with :func:`asrkt.losses.kd.kd_loss_reference`'s signature running on ``backend``
    (``reference`` returns the reference itself)."""
    _check_backend_name(backend)
    if backend == "reference":
        return kd_loss_reference
    return functools.partial(kd_loss, backend=backend)


def select_kd_loss_sparse(backend: str):
    """A callable with :func:`asrkt.losses.kd.kd_loss_sparse_reference`'s signature running on ``backend``."""
    _check_backend_name(backend)
    if backend == "reference":
        return kd_loss_sparse_reference
    return functools.partial(kd_loss_sparse, backend=backend)
