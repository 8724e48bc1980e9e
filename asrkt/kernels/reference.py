"""Pure-PyTorch implementations of the per-frame primitives the Triton kernels compute.

Same signatures as :mod:`asrkt.kernels.triton_kd`, so the autograd Functions in
:mod:`asrkt.kernels.functions` run on either. They compute in float32 (float64 stays float64, which is
what ``torch.autograd.gradcheck`` needs) and give gradients in closed form; the tests check those
against autograd of the loss of record, :func:`asrkt.losses.kd.kd_loss_reference`.

Notation: s = student / T, t = teacher / T, log q = log_softmax(s), log p = log_softmax(t),
KL = sum_j p_j (log p_j - log q_j). ``coef`` is the per-frame factor d loss / d KL divided by T (the
chain rule through s = student / T), so grad_student = coef * (q - p).
"""
from __future__ import annotations

import torch

from asrkt.losses.kd import topk_log_probs as topk_log_probs_reference  # noqa: F401  (re-exported)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def _write_grad(grad: torch.Tensor, student: torch.Tensor, inplace: bool) -> torch.Tensor:
    if inplace:
        return student.copy_(grad)
    return grad.to(student.dtype)


def dense_forward(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  coef: torch.Tensor | None = None, inplace: bool = False):
    """Per-frame KL(p_T || q_T), the log-sum-exps of s and t, and (when ``coef`` is given) the student
    gradient ``coef * (q - p)``, written over ``student`` when ``inplace``. Returns (kl, lse_s, lse_t, grad)."""
    cd = compute_dtype(student.dtype)
    s = student.to(cd) / temperature
    t = teacher.to(cd) / temperature
    lse_s = torch.logsumexp(s, -1)
    lse_t = torch.logsumexp(t, -1)
    log_q = s - lse_s[:, None]
    log_p = t - lse_t[:, None]
    p = log_p.exp()
    kl = (p * (log_p - log_q)).sum(-1)
    grad = None
    if coef is not None:
        grad = _write_grad(coef.to(cd)[:, None] * (log_q.exp() - p), student, inplace)
    return kl, lse_s, lse_t, grad


def dense_backward(student: torch.Tensor, teacher: torch.Tensor, lse_s: torch.Tensor, lse_t: torch.Tensor,
                   kl: torch.Tensor, coef: torch.Tensor, temperature: float, teacher_grad: bool = False):
    """(grad_student, grad_teacher or None) from the saved statistics.

    d KL / d t_j = p_j (log p_j - log q_j - KL), so grad_teacher = coef * p * (log p - log q - KL).
    """
    cd = compute_dtype(student.dtype)
    log_q = student.to(cd) / temperature - lse_s[:, None]
    log_p = teacher.to(cd) / temperature - lse_t[:, None]
    p = log_p.exp()
    c = coef.to(cd)[:, None]
    grad_s = (c * (log_q.exp() - p)).to(student.dtype)
    grad_t = None
    if teacher_grad:
        grad_t = (c * p * (log_p - log_q - kl[:, None])).to(teacher.dtype)
    return grad_s, grad_t


def sparse_teacher(values: torch.Tensor, temperature: float, dtype: torch.dtype):
    """(log p, p) of the top-k teacher at temperature T, renormalised over the kept classes.

    A frame whose k entries are all padding (-inf) gets p = 0 everywhere (no loss, no gradient), which
    is what :func:`asrkt.losses.kd.kd_loss_sparse_reference` gives through its ``p > 0`` test.
    """
    v = values.to(dtype) / temperature
    m = v.max(-1).values
    m = torch.where(m == float("-inf"), torch.zeros_like(m), m)
    e = (v - m[:, None]).exp()
    z = e.sum(-1)
    z = torch.where(z > 0, z, torch.ones_like(z))
    return v - m[:, None] - z.log()[:, None], e / z[:, None]


def sparse_forward(student: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, temperature: float,
                   coef: torch.Tensor | None = None, inplace: bool = False):
    """Per-frame KL over the kept classes, lse of s, and (with ``coef``) the student gradient
    ``coef * (P q - scatter(p))`` with P = sum_k p_k. Returns (kl, lse_s, grad)."""
    cd = compute_dtype(student.dtype)
    s = student.to(cd) / temperature
    lse_s = torch.logsumexp(s, -1)
    log_p, p = sparse_teacher(values, temperature, cd)
    log_q = s.gather(1, indices) - lse_s[:, None]
    kl = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)
    grad = None
    if coef is not None:
        grad = _write_grad(_sparse_grad(s, lse_s, indices, p, coef.to(cd)), student, inplace)
    return kl, lse_s, grad


def _sparse_grad(s, lse_s, indices, p, coef):
    c = coef[:, None]
    grad = c * p.sum(-1, keepdim=True) * (s - lse_s[:, None]).exp()
    return grad.scatter_add_(1, indices, -c * p)


def sparse_backward(student: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, lse_s: torch.Tensor,
                    coef: torch.Tensor, temperature: float) -> torch.Tensor:
    """grad_student from the saved lse of s."""
    cd = compute_dtype(student.dtype)
    _, p = sparse_teacher(values, temperature, cd)
    return _sparse_grad(student.to(cd) / temperature, lse_s, indices, p, coef.to(cd)).to(student.dtype)


def topk_log_probs(teacher: torch.Tensor, k: int):
    """(indices int64, log-probabilities at T=1) of the k most probable classes per frame."""
    return topk_log_probs_reference(teacher, k)
