"""autograd Functions for the KD losses, generic over the backend ``ops`` module.

``ops`` is :mod:`asrkt.kernels.reference` (pure PyTorch, any device, float64 for gradcheck) or
:mod:`asrkt.kernels.triton_kd` (Triton). Inputs arrive validated and flattened to (frames, classes)
from :mod:`asrkt.kernels`; ``weights`` is the per-frame factor of the reduction (mask / normaliser for
``mean``, mask for ``sum`` and ``none``), so loss = alpha * T^2 * sum_t weights_t * KL_t.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class DenseKDFunction(torch.autograd.Function):
    """alpha * T^2 * sum_t w_t KL(p_T(t) || q_T(t)) (or per frame when ``per_frame``); gradients for the
    student logits and, when it requires them, the teacher."""

    @staticmethod
    def forward(ctx, student, teacher, weights, temperature, alpha, per_frame, ops):
        kl, lse_s, lse_t, _ = ops.dense_forward(student, teacher, temperature)
        ctx.save_for_backward(student, teacher, weights, kl, lse_s, lse_t)
        ctx.temperature, ctx.alpha, ctx.ops = temperature, alpha, ops
        scale = alpha * temperature ** 2
        per = kl * weights.to(kl.dtype)
        return scale * per if per_frame else scale * per.sum()

    @staticmethod
    def backward(ctx, grad_out):
        student, teacher, weights, kl, lse_s, lse_t = ctx.saved_tensors
        # d loss / d KL_t = alpha T^2 w_t g_t; the 1/T of s = student / T leaves alpha T w_t g_t.
        coef = (ctx.alpha * ctx.temperature) * weights.to(kl.dtype) * grad_out.to(kl.dtype)
        need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_s, grad_t = ctx.ops.dense_backward(student, teacher, lse_s, lse_t, kl, coef, ctx.temperature,
                                                teacher_grad=need_t)
        return (grad_s if need_s else None), grad_t, None, None, None, None, None


class SparseKDFunction(torch.autograd.Function):
    """The same loss from top-k teacher targets (indices, log-prob values at T=1, -inf padding).
    The teacher values are data: no gradient flows to them."""

    @staticmethod
    def forward(ctx, student, indices, values, weights, temperature, alpha, per_frame, ops):
        kl, lse_s, _ = ops.sparse_forward(student, indices, values, temperature)
        ctx.save_for_backward(student, indices, values, weights, lse_s)
        ctx.temperature, ctx.alpha, ctx.ops = temperature, alpha, ops
        scale = alpha * temperature ** 2
        per = kl * weights.to(kl.dtype)
        return scale * per if per_frame else scale * per.sum()

    @staticmethod
    def backward(ctx, grad_out):
        student, indices, values, weights, lse_s = ctx.saved_tensors
        coef = (ctx.alpha * ctx.temperature) * weights.to(lse_s.dtype) * grad_out.to(lse_s.dtype)
        grad_s = ctx.ops.sparse_backward(student, indices, values, lse_s, coef, ctx.temperature)
        return grad_s, None, None, None, None, None, None, None


class FusedLinearKDFunction(torch.autograd.Function):
    """KD loss of ``hidden @ weight.T + bias`` without ever holding all (frames x classes) logits.

    Frames are processed ``chunk_frames`` at a time: logits of the chunk (a GEMM), per-frame KL and
    d loss / d logits in one ``ops`` call (the gradient overwrites the chunk's logits), then
    grad_hidden[chunk] = grad_logits @ W, grad_W += grad_logits.T @ h, grad_b += sum(grad_logits).
    The gradients are computed during the forward pass (as Liger's fused linear cross-entropy does) and
    scaled by grad_output in backward; peak extra memory is one chunk of logits plus the gradients.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, teacher, indices, values, weights, temperature, alpha,
                chunk_frames, ops):
        n, h_dim = hidden.shape
        c = weight.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        need = need_h or need_w or need_b
        acc = torch.promote_types(weight.dtype, torch.float32)  # gradients of W, b accumulate in >= fp32
        # contiguous (empty_like would copy a strided layout), so that each chunk's rows are an mm out=
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(c, h_dim, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(c, dtype=acc, device=weight.device) if need_b else None
        coef_all = weights * (alpha * temperature) if need else None
        total = torch.zeros((), dtype=weights.dtype, device=hidden.device)
        for i0 in range(0, n, chunk_frames):
            i1 = min(n, i0 + chunk_frames)
            h = hidden[i0:i1]
            logits = F.linear(h, weight, bias)
            coef = coef_all[i0:i1] if need else None
            if teacher is not None:
                kl, _, _, g = ops.dense_forward(logits, teacher[i0:i1], temperature, coef=coef, inplace=True)
            else:
                kl, _, g = ops.sparse_forward(logits, indices[i0:i1], values[i0:i1], temperature, coef=coef,
                                              inplace=True)
            total += (kl * weights[i0:i1].to(kl.dtype)).sum()
            if need_h:
                torch.mm(g, weight, out=grad_h[i0:i1])
            if need_w:
                if g.dtype == acc:
                    grad_w.addmm_(g.t(), h)
                else:
                    grad_w += (g.t() @ h).to(acc)
            if need_b:
                grad_b += g.sum(0, dtype=acc)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total * (alpha * temperature ** 2)

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        go = grad_out.to(torch.float32 if grad_out.dtype != torch.float64 else torch.float64)
        gh = (grad_h * go).to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * go).to(w_dtype) if grad_w is not None else None
        gb = (grad_b * go).to(b_dtype) if grad_b is not None else None
        return gh, gw, gb, None, None, None, None, None, None, None, None
