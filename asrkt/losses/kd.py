"""Soft-target (knowledge-distillation) losses, pure PyTorch: the reference every fused kernel is tested against.

Loss of record (Hinton et al. 2015; Tang, Wang et al. 2016): over frames t,

    alpha * T^2 * sum_t mask_t * KL(p_T(t) || q_T(t)) / normaliser

with p_T = softmax(teacher / T) and q_T = softmax(student / T). The teacher may be given as logits or
as log-probabilities: softmax(log_softmax(z) / T) == softmax(z / T), so both give the same p_T and no
``kind`` switch is needed. The T^2 factor keeps gradient magnitudes comparable across temperatures.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from asrkt.utils.errors import AsrktError


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise AsrktError(f"temperature must be > 0, got {temperature}")


def _reduce(per_frame: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if mask is not None:
        per_frame = per_frame * mask.to(per_frame.dtype)
    if reduction == "sum":
        return per_frame.sum()
    if reduction == "mean":
        count = mask.to(per_frame.dtype).sum() if mask is not None else per_frame.new_tensor(per_frame.numel())
        return per_frame.sum() / count.clamp(min=1)
    if reduction == "none":
        return per_frame
    raise AsrktError(f"reduction must be sum, mean or none, got {reduction!r}")


def kd_loss_reference(student_logits: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                      mask: torch.Tensor | None = None, alpha: float = 1.0,
                      reduction: str = "mean") -> torch.Tensor:
    """Dense soft-target loss. ``student_logits``, ``teacher``: (frames, classes); ``mask``: (frames,)."""
    _check_temperature(temperature)
    if student_logits.shape != teacher.shape:
        raise AsrktError(f"student logits {tuple(student_logits.shape)} and teacher targets "
                         f"{tuple(teacher.shape)} differ in shape")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    per_frame = (log_p.exp() * (log_p - log_q)).sum(-1)
    return alpha * temperature ** 2 * _reduce(per_frame, mask, reduction)


def sparse_teacher_log_probs(values: torch.Tensor, temperature: float) -> torch.Tensor:
    """Top-k teacher log-probabilities at temperature T, renormalised over the k kept classes.

    ``values`` are the teacher's log-probabilities (at T=1) of the kept classes, (frames, k); padding
    entries are -inf. p_T is proportional to p^(1/T), restricted to the kept classes.
    """
    return F.log_softmax(values.float() / temperature, dim=-1)


def kd_loss_sparse_reference(student_logits: torch.Tensor, indices: torch.Tensor, values: torch.Tensor,
                             temperature: float = 1.0, mask: torch.Tensor | None = None, alpha: float = 1.0,
                             reduction: str = "mean") -> torch.Tensor:
    """Soft-target loss from top-k teacher targets, without densifying the teacher.

    ``indices``: (frames, k) int64 class ids; ``values``: (frames, k) teacher log-probabilities at T=1
    (-inf marks padding). KL(p_T || q_T) over the kept classes: sum_k p_k (log p_k - log q_k).
    """
    _check_temperature(temperature)
    if indices.shape != values.shape or indices.shape[0] != student_logits.shape[0]:
        raise AsrktError(f"top-k indices {tuple(indices.shape)}, values {tuple(values.shape)} and student "
                         f"logits {tuple(student_logits.shape)} do not match in frames/k")
    num_classes = student_logits.shape[-1]
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
        raise AsrktError(f"top-k class indices must lie in [0, {num_classes}), got "
                         f"[{int(indices.min())}, {int(indices.max())}]")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, indices)
    log_p = sparse_teacher_log_probs(values, temperature)
    # Padding entries (-inf), and every entry of an all-padding frame (NaN after log_softmax), get p = 0 and a
    # finite log p, so they contribute neither loss nor a NaN gradient.
    kept = torch.isfinite(log_p)
    p = torch.where(kept, log_p.exp(), torch.zeros_like(log_p))
    log_p = torch.where(kept, log_p, torch.zeros_like(log_p))
    per_frame = (p * (log_p - log_q)).sum(-1)
    return alpha * temperature ** 2 * _reduce(per_frame, mask, reduction)


def topk_log_probs(teacher: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k most probable classes per frame: (indices int64, log-probabilities at T=1)."""
    log_p = F.log_softmax(teacher.float(), dim=-1)
    values, indices = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    return indices, values
