"""Triton kernels for the soft-target (KD) loss and the teacher top-k, with their Python launchers.

Each launcher has the signature of its pure-PyTorch twin in :mod:`asrkt.kernels.reference` (the tests
compare the two). All arithmetic is float32 whatever the input dtype (float32, bfloat16, float16);
gradients are written in the input dtype.

Layout: one program handles BLOCK_M frames and walks the class axis in BLOCK_C chunks with an online
(running max / rescaled sum) softmax, so nothing beyond the inputs, the gradient and O(frames)
statistics is ever stored. Rows past the last frame are clamped onto it (their results are never
stored), which keeps every loaded row finite and the online max well defined.

Only the log-sum-exps are saved for the backward pass: exp(x - lse) is already numerically safe, so the
running maxima are not needed once the pass is over.

Import this module only after deciding on the interpreter: ``TRITON_INTERPRET=1`` must be set before
triton decorates the kernels for them to run on CPU tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import time).
try:
    from triton.runtime.interpreter import InterpretedFunction as _Interpreted
except ImportError:  # pragma: no cover - older triton
    _Interpreted = ()

#: Largest class chunk per program; tests lower it to exercise several chunks with a ragged last one.
MAX_BLOCK_C = 2048
#: Largest tile (frames x classes) held by one program for the dense/sparse kernels.
MAX_TILE = 1024
#: Largest class chunk for the top-k kernel (its bitonic network works on the whole chunk).
MAX_BLOCK_C_TOPK = 1024
#: Largest k the top-k kernel handles; beyond it the dispatcher uses torch.topk.
MAX_TOPK = 64

# Sort key of a padding column: the key of (-inf, low word 0), below the key of every real logit.
_PAD_KEY = -2139095041 << 32


@triton.jit
def _kd_dense_kernel(S, TCH, KL, LSE_S, LSE_T, COEF, GS, GT,
                     N, C, stride_s, stride_t, stride_gs, stride_gt, inv_temp,
                     BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, COMPUTE_STATS: tl.constexpr,
                     WRITE_GRAD: tl.constexpr, TEACHER_GRAD: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    rs = tl.minimum(rows, N - 1).to(tl.int64)
    s_row = S + rs[:, None] * stride_s
    t_row = TCH + rs[:, None] * stride_t
    if COMPUTE_STATS:
        m_s = tl.full([BLOCK_M], float("-inf"), tl.float32)
        m_t = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_s = tl.zeros([BLOCK_M], tl.float32)
        l_t = tl.zeros([BLOCK_M], tl.float32)
        # acc = sum_j e^(t_j - m_t) * ((t_j - m_t) - (s_j - m_s)): kept relative to the running maxima
        # so that large logits do not cancel catastrophically in KL = acc / l_t - log l_t + log l_s.
        acc = tl.zeros([BLOCK_M], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cmask = (cols < C)[None, :]
            s = tl.load(s_row + cols[None, :], mask=cmask, other=float("-inf")).to(tl.float32) * inv_temp
            t = tl.load(t_row + cols[None, :], mask=cmask, other=float("-inf")).to(tl.float32) * inv_temp
            new_ms = tl.maximum(m_s, tl.max(s, 1))
            new_mt = tl.maximum(m_t, tl.max(t, 1))
            scale_t = tl.exp(m_t - new_mt)
            shift = tl.where(l_t > 0, (new_mt - m_t) - (new_ms - m_s), 0.0)
            acc = scale_t * (acc - shift * l_t)
            l_s = l_s * tl.exp(m_s - new_ms) + tl.sum(tl.exp(s - new_ms[:, None]), 1)
            et = tl.exp(t - new_mt[:, None])
            l_t = l_t * scale_t + tl.sum(et, 1)
            d = (t - new_mt[:, None]) - (s - new_ms[:, None])
            acc += tl.sum(tl.where(cmask, et * d, 0.0), 1)
            m_s = new_ms
            m_t = new_mt
        lse_s = m_s + tl.log(l_s)
        lse_t = m_t + tl.log(l_t)
        kl = acc / l_t - tl.log(l_t) + tl.log(l_s)
        tl.store(KL + rows, kl, mask=row_ok)
        tl.store(LSE_S + rows, lse_s, mask=row_ok)
        tl.store(LSE_T + rows, lse_t, mask=row_ok)
    else:
        lse_s = tl.load(LSE_S + rs)
        lse_t = tl.load(LSE_T + rs)
        kl = tl.load(KL + rs)
    if WRITE_GRAD:
        coef = tl.load(COEF + rs)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cmask = (cols < C)[None, :]
            smask = row_ok[:, None] & cmask
            s = tl.load(s_row + cols[None, :], mask=cmask, other=0.0).to(tl.float32) * inv_temp
            t = tl.load(t_row + cols[None, :], mask=cmask, other=0.0).to(tl.float32) * inv_temp
            log_q = s - lse_s[:, None]
            log_p = t - lse_t[:, None]
            p = tl.exp(log_p)
            g = coef[:, None] * (tl.exp(log_q) - p)
            tl.store(GS + rs[:, None] * stride_gs + cols[None, :], g.to(GS.dtype.element_ty), mask=smask)
            if TEACHER_GRAD:
                gt = coef[:, None] * p * (log_p - log_q - kl[:, None])
                tl.store(GT + rs[:, None] * stride_gt + cols[None, :], gt.to(GT.dtype.element_ty), mask=smask)


@triton.jit
def _kd_sparse_kernel(S, IDX, VAL, KL, LSE_S, COEF, GS,
                      N, C, K, stride_s, stride_i, stride_v, stride_gs, inv_temp,
                      BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                      COMPUTE_STATS: tl.constexpr, WRITE_GRAD: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    rs = tl.minimum(rows, N - 1).to(tl.int64)
    s_row = S + rs[:, None] * stride_s
    kk = tl.arange(0, BLOCK_K)
    kmask = (kk < K)[None, :]
    idx = tl.load(IDX + rs[:, None] * stride_i + kk[None, :], mask=kmask, other=0)
    # Teacher at temperature T, renormalised over the kept classes; a frame with only padding has p = 0.
    v = tl.load(VAL + rs[:, None] * stride_v + kk[None, :], mask=kmask, other=float("-inf")).to(tl.float32)
    v = v * inv_temp
    m_v = tl.max(v, 1)
    m_v = tl.where(m_v == float("-inf"), 0.0, m_v)
    e = tl.exp(v - m_v[:, None])
    z = tl.sum(e, 1)
    z = tl.where(z > 0, z, 1.0)
    p = e / z[:, None]
    # Student logits at the kept classes, read before any gradient may overwrite them (in-place use).
    s_k = tl.load(s_row + idx, mask=kmask, other=0.0).to(tl.float32) * inv_temp
    if COMPUTE_STATS:
        m_s = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_s = tl.zeros([BLOCK_M], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cmask = (cols < C)[None, :]
            s = tl.load(s_row + cols[None, :], mask=cmask, other=float("-inf")).to(tl.float32) * inv_temp
            new_ms = tl.maximum(m_s, tl.max(s, 1))
            l_s = l_s * tl.exp(m_s - new_ms) + tl.sum(tl.exp(s - new_ms[:, None]), 1)
            m_s = new_ms
        lse_s = m_s + tl.log(l_s)
        log_p = v - m_v[:, None] - tl.log(z)[:, None]
        log_q = s_k - lse_s[:, None]
        kl = tl.sum(tl.where(p > 0, p * (log_p - log_q), 0.0), 1)
        tl.store(KL + rows, kl, mask=row_ok)
        tl.store(LSE_S + rows, lse_s, mask=row_ok)
    else:
        lse_s = tl.load(LSE_S + rs)
    if WRITE_GRAD:
        coef = tl.load(COEF + rs)
        p_total = tl.sum(p, 1)
        g_row = GS + rs[:, None] * stride_gs
        # Dense part coef * P * q over all classes ...
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cmask = (cols < C)[None, :]
            s = tl.load(s_row + cols[None, :], mask=cmask, other=0.0).to(tl.float32) * inv_temp
            g = (coef * p_total)[:, None] * tl.exp(s - lse_s[:, None])
            tl.store(g_row + cols[None, :], g.to(GS.dtype.element_ty), mask=row_ok[:, None] & cmask)
        # ... then the kept classes: coef * (P q_j - sum of p over the entries naming class j). Entries
        # naming the same class (repeats, or padding on class 0) all store the same value: no race.
        same = idx[:, :, None] == idx[:, None, :]
        p_sum = tl.sum(tl.where(same, p[:, None, :], 0.0), 2)
        g_k = coef[:, None] * (p_total[:, None] * tl.exp(s_k - lse_s[:, None]) - p_sum)
        tl.debug_barrier()  # the dense stores above must land before these overwrite some of them
        tl.store(g_row + idx, g_k.to(GS.dtype.element_ty), mask=row_ok[:, None] & kmask)


@triton.jit
def _topk_kernel(X, OUT_I, OUT_V, N, C, K, stride_x, stride_o,
                 BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, PAD_KEY: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    rs = tl.minimum(rows, N - 1).to(tl.int64)
    x_row = X + rs[:, None] * stride_x
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    # Running top-k of (logit, -column) packed into one int64 key: the high word is the float's bits
    # mapped to an order-preserving int32, the low word 2^31-1-column, so ties go to the lower column.
    best = tl.full([BLOCK_M, BLOCK_K], PAD_KEY, tl.int64)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = (cols < C)[None, :]
        x = tl.load(x_row + cols[None, :], mask=cmask, other=float("-inf")).to(tl.float32)
        new_m = tl.maximum(m, tl.max(x, 1))
        l = l * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m[:, None]), 1)
        m = new_m
        bits = x.to(tl.int32, bitcast=True)
        key_hi = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        key_lo = tl.where(cmask, 0x7FFFFFFF - cols[None, :], 0)
        keys = (key_hi.to(tl.int64) << 32) | key_lo.to(tl.int64)
        chunk_best = tl.topk(keys, BLOCK_K)
        both = tl.reshape(tl.join(best, chunk_best), [BLOCK_M, 2 * BLOCK_K])
        best = tl.topk(both, BLOCK_K)
    lse = m + tl.log(l)
    col = 0x7FFFFFFF - (best & 0x7FFFFFFF)  # the low word never has bit 31 set
    hi = (best >> 32).to(tl.int32)
    val = tl.where(hi < 0, hi ^ 0x7FFFFFFF, hi).to(tl.float32, bitcast=True) - lse[:, None]
    kk = tl.arange(0, BLOCK_K)
    omask = row_ok[:, None] & (kk < K)[None, :]
    tl.store(OUT_I + rs[:, None] * stride_o + kk[None, :], col, mask=omask)
    tl.store(OUT_V + rs[:, None] * stride_o + kk[None, :], val, mask=omask)


# --------------------------------------------------------------------------------------------- launchers
def interpreted() -> bool:
    """True when the kernels were built for the CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return bool(_Interpreted) and isinstance(_kd_dense_kernel, _Interpreted)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """The class axis must be contiguous; row strides may be anything."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _tile(n: int, c: int, max_block_c: int, max_tile: int):
    block_c = min(triton.next_power_of_2(c), max_block_c)
    block_m = max(1, min(max_tile // block_c, triton.next_power_of_2(n), 16))
    # Register counts from ptxas (sm_90) stay <= ~80 with these; not tuned on a GPU.
    num_warps = 4 if block_m * block_c <= 512 else 8
    return block_m, block_c, num_warps


def _stats(n: int, device) -> torch.Tensor:
    return torch.empty(n, dtype=torch.float32, device=device)


def dense_forward(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  coef: torch.Tensor | None = None, inplace: bool = False):
    """See :func:`asrkt.kernels.reference.dense_forward`."""
    student, teacher = _rows(student), _rows(teacher)
    n, c = student.shape
    kl, lse_s, lse_t = _stats(n, student.device), _stats(n, student.device), _stats(n, student.device)
    grad = None
    if coef is not None:
        grad = student if inplace else torch.empty_like(student)
        coef = coef.float().contiguous()
    bm, bc, nw = _tile(n, c, MAX_BLOCK_C, MAX_TILE)
    g = grad if grad is not None else student
    _kd_dense_kernel[(triton.cdiv(n, bm),)](
        student, teacher, kl, lse_s, lse_t, coef if coef is not None else kl, g, g,
        n, c, student.stride(0), teacher.stride(0), g.stride(0), g.stride(0), 1.0 / temperature,
        BLOCK_M=bm, BLOCK_C=bc, COMPUTE_STATS=True, WRITE_GRAD=coef is not None, TEACHER_GRAD=False,
        num_warps=nw)
    return kl, lse_s, lse_t, grad


def dense_backward(student: torch.Tensor, teacher: torch.Tensor, lse_s: torch.Tensor, lse_t: torch.Tensor,
                   kl: torch.Tensor, coef: torch.Tensor, temperature: float, teacher_grad: bool = False):
    """See :func:`asrkt.kernels.reference.dense_backward`."""
    student, teacher = _rows(student), _rows(teacher)
    n, c = student.shape
    grad_s = torch.empty_like(student)
    grad_t = torch.empty_like(teacher) if teacher_grad else None
    gt = grad_t if grad_t is not None else grad_s
    bm, bc, nw = _tile(n, c, MAX_BLOCK_C, MAX_TILE)
    _kd_dense_kernel[(triton.cdiv(n, bm),)](
        student, teacher, kl.contiguous(), lse_s.contiguous(), lse_t.contiguous(), coef.float().contiguous(),
        grad_s, gt, n, c, student.stride(0), teacher.stride(0), grad_s.stride(0), gt.stride(0),
        1.0 / temperature, BLOCK_M=bm, BLOCK_C=bc, COMPUTE_STATS=False, WRITE_GRAD=True,
        TEACHER_GRAD=teacher_grad, num_warps=nw)
    return grad_s, grad_t


def _sparse_launch(student, indices, values, temperature, kl, lse_s, coef, grad, compute_stats):
    student, indices, values = _rows(student), _rows(indices), _rows(values)
    n, c = student.shape
    k = indices.shape[1]
    block_k = max(2, triton.next_power_of_2(k))
    bm, bc, nw = _tile(n, c, MAX_BLOCK_C, MAX_TILE)
    bm = min(bm, max(1, 2048 // (block_k * block_k)))  # the duplicate-class merge holds (BM, K, K)
    g = grad if grad is not None else student
    _kd_sparse_kernel[(triton.cdiv(n, bm),)](
        student, indices, values, kl, lse_s, coef if coef is not None else lse_s, g,
        n, c, k, student.stride(0), indices.stride(0), values.stride(0), g.stride(0), 1.0 / temperature,
        BLOCK_M=bm, BLOCK_C=bc, BLOCK_K=block_k, COMPUTE_STATS=compute_stats, WRITE_GRAD=coef is not None,
        num_warps=nw)


def sparse_forward(student: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, temperature: float,
                   coef: torch.Tensor | None = None, inplace: bool = False):
    """See :func:`asrkt.kernels.reference.sparse_forward`."""
    student = _rows(student)
    n = student.shape[0]
    kl, lse_s = _stats(n, student.device), _stats(n, student.device)
    grad = None
    if coef is not None:
        grad = student if inplace else torch.empty_like(student)
        coef = coef.float().contiguous()
    _sparse_launch(student, indices, values, temperature, kl, lse_s, coef, grad, True)
    return kl, lse_s, grad


def sparse_backward(student: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, lse_s: torch.Tensor,
                    coef: torch.Tensor, temperature: float) -> torch.Tensor:
    """See :func:`asrkt.kernels.reference.sparse_backward`."""
    grad = torch.empty_like(_rows(student))
    _sparse_launch(student, indices, values, temperature, lse_s, lse_s.contiguous(), coef.float().contiguous(),
                   grad, False)
    return grad


def topk_log_probs(teacher: torch.Tensor, k: int):
    """(indices int64, log-probabilities at T=1) of the k most probable classes, largest first; one pass
    over the logits (online log-sum-exp plus a running bitonic top-k). Needs ``k <= MAX_TOPK``."""
    teacher = _rows(teacher)
    n, c = teacher.shape
    k = min(k, c)
    block_k = max(2, triton.next_power_of_2(k))
    block_c = max(min(triton.next_power_of_2(c), MAX_BLOCK_C_TOPK), block_k)
    block_m = max(1, min(MAX_BLOCK_C_TOPK // block_c, triton.next_power_of_2(n), 16))
    indices = torch.empty(n, k, dtype=torch.int64, device=teacher.device)
    values = torch.empty(n, k, dtype=torch.float32, device=teacher.device)
    _topk_kernel[(triton.cdiv(n, block_m),)](
        teacher, indices, values, n, c, k, teacher.stride(0), k,
        BLOCK_M=block_m, BLOCK_C=block_c, BLOCK_K=block_k, PAD_KEY=_PAD_KEY, num_warps=4)
    return indices, values
