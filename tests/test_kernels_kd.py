"""asrkt.kernels: Triton kernels (run by Triton's CPU interpreter) and their PyTorch references against
the loss of record, asrkt.losses.kd; gradcheck of the closed-form gradients; every bad-input error.

Shapes are tiny and block sizes are lowered so that class chunks and frame blocks are ragged and the
interpreter stays fast.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (conftest does it too)

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from asrkt import kernels  # noqa: E402
from asrkt.kernels import (fused_linear_kd_loss, kd_loss, kd_loss_sparse, reference,  # noqa: E402
                           select_kd_loss, select_kd_loss_sparse, topk_log_probs)
from asrkt.kernels.functions import DenseKDFunction, SparseKDFunction  # noqa: E402
from asrkt.losses.kd import kd_loss_reference, kd_loss_sparse_reference  # noqa: E402
from asrkt.losses.kd import topk_log_probs as topk_reference  # noqa: E402
from asrkt.utils.errors import AsrktError  # noqa: E402

triton_kd = pytest.importorskip("asrkt.kernels.triton_kd")

# The interpreter evaluates masked-off lanes too (e.g. -inf - -inf on padding columns); their NaNs are
# never stored, but numpy warns about them.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

N, C, K, H = 13, 45, 5, 8  # 13 frames: ragged against 4-frame blocks and 5-frame chunks; 45 = 2*16 + 13
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Several class chunks (16 wide, the last one ragged) and several frame blocks per launch."""
    monkeypatch.setattr(triton_kd, "MAX_BLOCK_C", 16)
    monkeypatch.setattr(triton_kd, "MAX_TILE", 64)
    monkeypatch.setattr(triton_kd, "MAX_BLOCK_C_TOPK", 16)
    assert triton_kd.interpreted() or torch.cuda.is_available()


def close(actual, expected, dtype=torch.float32):
    """Relative agreement, with the absolute floor scaled to the tensor's magnitude (gradients have
    entries near zero where a pure relative test means nothing)."""
    tol = TOL[dtype]
    actual, expected = actual.double(), expected.double()
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * max(expected.abs().max().item(), 1e-12))


def make_dense(dtype=torch.float32, shape=(N, C), offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(shape, generator=g) + offset).to(dtype)
    teacher = (2 * torch.randn(shape, generator=g) - offset).to(dtype)
    mask = torch.rand(shape[:-1], generator=g) > 0.3
    return student, teacher, mask


def make_topk(n=N, c=C, k=K, seed=1, dtype=torch.float32):
    """Top-k targets with padding, a frame of only padding and a repeated class."""
    g = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(c, generator=g)[:k] for _ in range(n)])
    values = torch.randn(n, k, generator=g).log_softmax(-1)
    values[2, 3:] = float("-inf")
    indices[2, 3:] = 0  # the IO layer pads with class 0
    indices[5, 1] = indices[5, 0]
    values[n - 1] = float("-inf")
    indices[n - 1] = 0
    return indices, values.to(dtype)


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


# ----------------------------------------------------------------------------------------------- dense
DENSE_CASES = [
    # dtype, temperature, alpha, reduction, masked
    (torch.float32, 1.0, 1.0, "mean", False),
    (torch.float32, 2.5, 0.3, "mean", True),
    (torch.float32, 0.7, 1.0, "sum", True),
    (torch.float32, 2.0, 1.5, "none", True),
    (torch.bfloat16, 2.0, 0.5, "mean", True),
    (torch.bfloat16, 1.0, 1.0, "sum", False),
]


@pytest.mark.parametrize("dtype,temperature,alpha,reduction,masked", DENSE_CASES)
def test_dense_kernel_matches_reference(dtype, temperature, alpha, reduction, masked):
    student, teacher, mask = make_dense(dtype)
    mask = mask if masked else None
    inputs = [student.clone().requires_grad_(), teacher.clone().requires_grad_()]
    ours = kd_loss(*inputs, temperature, mask, alpha, reduction, backend="triton")
    ref_inputs = [student.clone().requires_grad_(), teacher.clone().requires_grad_()]
    ref = kd_loss_reference(*ref_inputs, temperature, mask, alpha, reduction)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    close(ours, ref, dtype)
    seed = torch.randn(ours.shape) if reduction == "none" else torch.tensor(0.7)
    for a, b in zip(grads((ours * seed).sum(), inputs), grads((ref * seed).sum(), ref_inputs)):
        assert a.dtype == dtype
        close(a, b, dtype)


def test_dense_kernel_leading_dims_and_large_logits():
    """(B, T, C) with a (B, T) mask, and logits offset by +-60 (the online softmax keeps its sums
    relative to the running maxima, so the KL does not cancel catastrophically)."""
    student, teacher, mask = make_dense(shape=(3, 5, C), offset=60.0)
    s1, s2 = student.clone().requires_grad_(), student.clone().requires_grad_()
    ours = kd_loss(s1, teacher, 1.5, mask, 1.0, "mean", backend="triton")
    ref = kd_loss_reference(s2.double(), teacher.double(), 1.5, mask, 1.0, "mean")
    close(ours, ref)
    close(grads(ours, [s1])[0], grads(ref, [s2])[0])


def test_dense_teacher_as_log_probs_gives_same_loss():
    student, teacher, _ = make_dense()
    a = kd_loss(student, teacher, 2.0, backend="triton")
    b = kd_loss(student, teacher.log_softmax(-1), 2.0, backend="triton")
    close(a, b)


def test_dense_fused_forward_gradient_matches_backward_kernel():
    """The forward kernel's in-pass gradient (used by the fused output layer) equals the backward kernel's."""
    student, teacher, _ = make_dense()
    coef = torch.rand(N)
    kl, lse_s, lse_t, g_fwd = triton_kd.dense_forward(student, teacher, 2.0, coef=coef)
    g_bwd, _ = triton_kd.dense_backward(student, teacher, lse_s, lse_t, kl, coef, 2.0)
    r_kl, r_lse_s, r_lse_t, r_g = reference.dense_forward(student, teacher, 2.0, coef=coef)
    for a, b in ((kl, r_kl), (lse_s, r_lse_s), (lse_t, r_lse_t), (g_fwd, r_g), (g_bwd, r_g)):
        close(a, b)
    buf = student.clone()
    triton_kd.dense_forward(buf, teacher, 2.0, coef=coef, inplace=True)
    close(buf, r_g)


# ---------------------------------------------------------------------------------------------- sparse
SPARSE_CASES = [
    (torch.float32, 1.0, 1.0, "mean", False),
    (torch.float32, 2.0, 0.4, "sum", True),
    (torch.float32, 3.0, 1.0, "none", True),
    (torch.bfloat16, 2.0, 1.0, "mean", True),
]


@pytest.mark.parametrize("dtype,temperature,alpha,reduction,masked", SPARSE_CASES)
def test_sparse_kernel_matches_reference(dtype, temperature, alpha, reduction, masked):
    student, _, mask = make_dense(dtype)
    indices, values = make_topk()
    mask = mask if masked else None
    s1, s2 = student.clone().requires_grad_(), student.clone().requires_grad_()
    ours = kd_loss_sparse(s1, indices, values, temperature, mask, alpha, reduction, backend="triton")
    # The last frame has only padding: the reference's loss there is 0 but its gradient is NaN
    # (log_softmax of all -inf), so the gradient is compared on the other frames.
    ref = kd_loss_sparse_reference(s2, indices, values, temperature, mask, alpha, reduction)
    close(ours, ref, dtype)
    seed = torch.randn(ours.shape) if reduction == "none" else torch.tensor(1.3)
    ga, gb = grads((ours * seed).sum(), [s1])[0], grads((ref * seed).sum(), [s2])[0]
    assert ga.dtype == dtype
    close(ga[:-1], gb[:-1], dtype)
    assert torch.equal(ga[-1], torch.zeros_like(ga[-1]))


def test_sparse_matches_dense_on_densified_teacher():
    """With k = C the sparse loss is the dense loss of the same teacher."""
    student, teacher, mask = make_dense()
    log_p = teacher.log_softmax(-1)
    values, indices = log_p.sort(-1, descending=True)
    close(kd_loss_sparse(student, indices, values, 1.7, mask, backend="triton"),
          kd_loss_reference(student, teacher, 1.7, mask))


def test_sparse_forward_gradient_in_place():
    student, _, _ = make_dense()
    indices, values = make_topk()
    coef = torch.rand(N)
    r_kl, r_lse, r_g = reference.sparse_forward(student, indices, values, 1.5, coef=coef)
    buf = student.clone()
    kl, lse, g = triton_kd.sparse_forward(buf, indices, values, 1.5, coef=coef, inplace=True)
    assert g.data_ptr() == buf.data_ptr()
    close(kl, r_kl)
    close(lse, r_lse)
    close(buf, r_g)
    close(triton_kd.sparse_backward(student, indices, values, lse, coef, 1.5), r_g)


# ----------------------------------------------------------------------------------------- fused linear
FUSED_CASES = [
    # backend, dtype, teacher kind, bias, reduction, temperature, alpha, masked
    ("triton", torch.float32, "dense", True, "mean", 2.0, 0.6, True),
    ("triton", torch.float32, "sparse", True, "sum", 1.0, 1.0, False),
    ("triton", torch.float32, "dense", False, "sum", 1.0, 1.0, True),
    ("triton", torch.bfloat16, "dense", True, "mean", 2.0, 1.0, True),
    ("reference", torch.float32, "dense", True, "mean", 3.0, 0.5, True),
    ("reference", torch.float32, "sparse", False, "mean", 2.0, 1.0, True),
]


@pytest.mark.parametrize("backend,dtype,kind,with_bias,reduction,temperature,alpha,masked", FUSED_CASES)
def test_fused_linear_matches_reference(backend, dtype, kind, with_bias, reduction, temperature, alpha, masked):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(N, H, generator=g).to(dtype)
    weight = torch.randn(C, H, generator=g).to(dtype)
    bias = torch.randn(C, generator=g).to(dtype) if with_bias else None
    _, teacher, mask = make_dense(dtype)
    mask = mask if masked else None
    indices, values = make_topk()
    if kind == "sparse":  # drop the all-padding frame: the reference's gradient there is NaN
        indices, values = indices[:-1], values[:-1]
        hidden, mask = hidden[:-1], (mask[:-1] if mask is not None else None)
    params = [t for t in (hidden, weight, bias) if t is not None]
    ours_in = [t.clone().requires_grad_() for t in params]
    ref_in = [t.clone().requires_grad_() for t in params]
    targets = dict(teacher=teacher) if kind == "dense" else dict(indices=indices, values=values)
    b_ours = ours_in[2] if with_bias else None
    ours = fused_linear_kd_loss(ours_in[0], ours_in[1], b_ours, **targets, temperature=temperature, mask=mask,
                                alpha=alpha, reduction=reduction, chunk_frames=5, backend=backend)
    logits = F.linear(ref_in[0], ref_in[1], ref_in[2] if with_bias else None)
    if kind == "dense":
        ref = kd_loss_reference(logits, teacher, temperature, mask, alpha, reduction)
    else:
        ref = kd_loss_sparse_reference(logits, indices, values, temperature, mask, alpha, reduction)
    close(ours, ref, dtype)
    for a, b, t in zip(grads(ours * 0.8, ours_in), grads(ref * 0.8, ref_in), params):
        assert a.dtype == t.dtype and a.shape == t.shape
        close(a, b, dtype)


def test_fused_linear_without_grad_and_with_leading_dims():
    hidden = torch.randn(2, 7, H)
    weight, bias = torch.randn(C, H), torch.randn(C)
    _, teacher, mask = make_dense(shape=(2, 7, C))
    with torch.no_grad():
        ours = fused_linear_kd_loss(hidden, weight, bias, teacher=teacher, mask=mask, chunk_frames=4,
                                    backend="triton")
    close(ours, kd_loss_reference(F.linear(hidden, weight, bias), teacher, 1.0, mask))


# ---------------------------------------------------------------------------------------------- gradcheck
def _f64(*tensors):
    return [t.double().requires_grad_() for t in tensors]


def test_gradcheck_dense_reference_function():
    student, teacher, mask = make_dense(shape=(4, 7))
    s, t = _f64(student, teacher)
    w = mask.double() / mask.double().sum()
    assert torch.autograd.gradcheck(lambda a, b: DenseKDFunction.apply(a, b, w, 2.0, 0.7, False, reference),
                                    (s, t))
    assert torch.autograd.gradcheck(lambda a, b: DenseKDFunction.apply(a, b, w, 0.5, 1.0, True, reference),
                                    (s, t))


def test_gradcheck_sparse_reference_function():
    student, _, mask = make_dense(shape=(6, 9))
    indices, values = make_topk(n=6, c=9, k=3)
    (s,) = _f64(student)
    w = mask.double()
    assert torch.autograd.gradcheck(
        lambda a: SparseKDFunction.apply(a, indices, values.double(), w, 1.5, 0.9, False, reference), (s,))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_gradcheck_fused_linear_reference_path(kind):
    g = torch.Generator().manual_seed(4)
    hidden, weight, bias = _f64(torch.randn(6, 3, generator=g), torch.randn(9, 3, generator=g),
                                torch.randn(9, generator=g))
    teacher = torch.randn(6, 9, generator=g).double()
    indices, values = make_topk(n=6, c=9, k=3)
    mask = torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    targets = dict(teacher=teacher) if kind == "dense" else dict(indices=indices, values=values.double())

    def fn(h, w, b):
        return fused_linear_kd_loss(h, w, b, **targets, temperature=2.0, mask=mask, alpha=0.8, chunk_frames=4,
                                    backend="reference")
    assert torch.autograd.gradcheck(fn, (hidden, weight, bias))


def test_reference_function_matches_loss_of_record():
    """The closed-form PyTorch ops (what the kernels implement) against autograd of kd_loss_reference."""
    student, teacher, mask = make_dense()
    s1, t1, s2, t2 = (x.clone().requires_grad_() for x in (student, teacher, student, teacher))
    w = mask.float() / mask.float().sum()
    ours = DenseKDFunction.apply(s1, t1, w, 2.0, 0.5, False, reference)
    ref = kd_loss_reference(s2, t2, 2.0, mask, 0.5)
    close(ours, ref)
    for a, b in zip(grads(ours, [s1, t1]), grads(ref, [s2, t2])):
        close(a, b)


# -------------------------------------------------------------------------------------------------- top-k
@pytest.mark.parametrize("shape,k", [((5, C), 5), ((3, 40), 8), ((2, 3, 11), 4), ((4, 3), 7)])
def test_topk_kernel_matches_reference(shape, k):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5)) * 4
    idx, val = topk_log_probs(x, k, backend="triton")
    r_idx, r_val = topk_reference(x, k)
    assert idx.dtype == torch.int64 and val.dtype == torch.float32
    assert idx.shape == r_idx.shape == shape[:-1] + (min(k, shape[-1]),)
    assert torch.equal(idx, r_idx)
    torch.testing.assert_close(val, r_val, rtol=1e-6, atol=1e-6)


def test_topk_kernel_bfloat16():
    """bf16 logits have ties; the kept values must agree and each index must point at its value."""
    x = (torch.randn(4, C, generator=torch.Generator().manual_seed(6)) * 4).to(torch.bfloat16)
    idx, val = topk_log_probs(x, 6, backend="triton")
    r_idx, r_val = topk_reference(x, 6)
    torch.testing.assert_close(val, r_val, rtol=1e-6, atol=1e-6)
    log_p = x.float().log_softmax(-1)
    torch.testing.assert_close(log_p.gather(1, idx), val, rtol=1e-6, atol=1e-6)


def test_topk_large_k_falls_back_to_reference(monkeypatch):
    monkeypatch.setattr(triton_kd, "MAX_TOPK", 4)
    x = torch.randn(3, 10)
    idx, val = topk_log_probs(x, 6, backend="triton")
    r_idx, r_val = topk_reference(x, 6)
    assert torch.equal(idx, r_idx) and torch.equal(val, r_val)


# ------------------------------------------------------------------------------------------------ dispatch
def test_auto_uses_reference_on_cpu_and_select_functions():
    student, teacher, mask = make_dense()
    assert kernels.resolve_backend("auto", [student, teacher], "x") == "reference"
    assert select_kd_loss("reference") is kd_loss_reference
    assert select_kd_loss_sparse("reference") is kd_loss_sparse_reference
    assert torch.equal(select_kd_loss("auto")(student, teacher, 2.0, mask, 0.5, "sum"),
                       kd_loss_reference(student, teacher, 2.0, mask, 0.5, "sum"))
    close(select_kd_loss("triton")(student, teacher, 2.0, mask, 0.5, "sum"),
          kd_loss_reference(student, teacher, 2.0, mask, 0.5, "sum"))
    indices, values = make_topk()
    close(select_kd_loss_sparse("triton")(student, indices, values, 2.0, mask),
          kd_loss_sparse_reference(student, indices, values, 2.0, mask))


def test_float64_goes_to_reference_under_auto():
    student, teacher, _ = make_dense(torch.float64)
    assert kernels.resolve_backend("auto", [student, teacher], "x") == "reference"


# -------------------------------------------------------------------------------------------------- errors
def _raises(match, fn, *args, **kw):
    with pytest.raises(AsrktError, match=match):
        fn(*args, **kw)


def test_errors_dense():
    s, t, mask = make_dense()
    _raises(r"kd_loss: student logits \(13, 45\) and teacher targets \(13, 44\) differ in shape",
            kd_loss, s, t[:, :-1], backend="triton")
    _raises(r"temperature must be a finite number > 0, got 0", kd_loss, s, t, 0.0)
    _raises(r"temperature must be a finite number > 0, got -1", kd_loss, s, t, -1.0)
    _raises(r"temperature must be a finite number > 0, got nan", kd_loss, s, t, float("nan"))
    bad = t.clone()
    bad[4, 7] = float("nan")
    bad[6, 1] = float("inf")
    _raises(r"teacher targets contain NaN or inf \(2 entries, first at index \(4, 7\)\)", kd_loss, s, bad,
            backend="triton")
    _raises(r"student logits must be float32, bfloat16, float16 or float64, got torch.int64",
            kd_loss, s.long(), t)
    _raises(r"triton backend takes float32, bfloat16 or float16 tensors, got torch.float64",
            kd_loss, s.double(), t.double(), backend="triton")
    _raises(r"empty input: student logits has shape \(0, 45\)", kd_loss, s[:0], t[:0], backend="triton")
    _raises(r"empty input: student logits has shape \(13, 0\)", kd_loss, s[:, :0], t[:, :0])
    _raises(r"must be \(frames, classes\).*got shape \(45,\)", kd_loss, s[0], t[0])
    _raises(r"mask has shape \(12,\) but the frames have shape \(13,\)", kd_loss, s, t, mask=mask[:-1])
    _raises(r"mask must be bool or floating point, got torch.int64", kd_loss, s, t, mask=mask.long())
    _raises(r"reduction must be one of mean, sum, none, got 'avg'", kd_loss, s, t, reduction="avg")
    _raises(r"backend must be one of auto, reference, triton, got 'cuda'", kd_loss, s, t, backend="cuda")
    _raises(r"teacher targets must be a torch.Tensor", kd_loss, s, t.numpy())


def test_errors_sparse():
    s, _, mask = make_dense()
    indices, values = make_topk()
    for bad_index, shown in ((-1, r"\[-1, \d+\]"), (C, r"\[0, 45\]")):
        idx = indices.clone()
        idx[3, 2] = bad_index
        _raises(rf"top-k class indices must lie in \[0, 45\), got values in {shown} \(1 entries, first at "
                r"index \(3, 2\)\)", kd_loss_sparse, s, idx, values, backend="triton")
    _raises(r"top-k indices must be int64, got torch.int32", kd_loss_sparse, s, indices.int(), values)
    _raises(r"top-k indices \(13, 4\) and values \(13, 5\) must both be \(frames, k\)",
            kd_loss_sparse, s, indices[:, :4], values)
    _raises(r"top-k indices \(12, 5\) and values \(12, 5\) must both be \(frames, k\) with frames \(13,\)",
            kd_loss_sparse, s, indices[1:], values[1:])
    _raises(r"empty input: top-k targets have k = 0", kd_loss_sparse, s, indices[:, :0], values[:, :0])
    for bad_value in (float("nan"), float("inf")):
        v = values.clone()
        v[1, 1] = bad_value
        _raises(r"teacher top-k values contain NaN or \+inf \(1 entries, first at index \(1, 1\)\)",
                kd_loss_sparse, s, indices, v, backend="triton")
    _raises(r"top-k values must be float32, bfloat16, float16 or float64, got torch.int64",
            kd_loss_sparse, s, indices, values.long())
    _raises(r"temperature must be a finite number > 0", kd_loss_sparse, s, indices, values, 0)
    _raises(r"does not differentiate the teacher top-k values",
            kd_loss_sparse, s, indices, values.clone().requires_grad_(), backend="triton")


def test_errors_fused_linear():
    hidden, weight, bias = torch.randn(N, H), torch.randn(C, H), torch.randn(C)
    _, teacher, _ = make_dense()
    indices, values = make_topk()
    _raises(r"hidden must be \(frames, H\) and weight \(classes, H\); got hidden \(13, 8\) and weight "
            r"\(45, 7\)", fused_linear_kd_loss, hidden, weight[:, :7], bias, teacher=teacher)
    _raises(r"bias must be \(45,\) to match weight", fused_linear_kd_loss, hidden, weight, bias[:3],
            teacher=teacher)
    _raises(r"teacher targets \(13, 44\) do not match the student logits \(13, 45\)",
            fused_linear_kd_loss, hidden, weight, bias, teacher=teacher[:, :-1])
    _raises(r"give either dense teacher targets or both top-k indices and values",
            fused_linear_kd_loss, hidden, weight, bias)
    _raises(r"give either dense teacher targets or both top-k indices and values",
            fused_linear_kd_loss, hidden, weight, bias, teacher=teacher, indices=indices, values=values)
    _raises(r"give either dense teacher targets or both top-k indices and values",
            fused_linear_kd_loss, hidden, weight, bias, indices=indices)
    _raises(r"reduction must be one of mean, sum, got 'none'", fused_linear_kd_loss, hidden, weight, bias,
            teacher=teacher, reduction="none")
    _raises(r"hidden, weight and bias must share one dtype, got torch.bfloat16, torch.float32",
            fused_linear_kd_loss, hidden.bfloat16(), weight, bias, teacher=teacher)
    _raises(r"empty input: hidden \(0, 8\)", fused_linear_kd_loss, hidden[:0], weight, bias, teacher=teacher[:0])
    _raises(r"chunk_frames must be a positive integer, got 0", fused_linear_kd_loss, hidden, weight, bias,
            teacher=teacher, chunk_frames=0)
    bad = teacher.clone()
    bad[0, 0] = float("inf")
    _raises(r"teacher targets contain NaN or inf", fused_linear_kd_loss, hidden, weight, bias, teacher=bad)
    idx = indices.clone()
    idx[0, 0] = C + 3
    _raises(r"top-k class indices must lie in \[0, 45\)", fused_linear_kd_loss, hidden, weight, bias,
            indices=idx, values=values)
    _raises(r"teacher targets are not differentiated here", fused_linear_kd_loss, hidden, weight, bias,
            teacher=teacher.clone().requires_grad_())


def test_errors_topk_and_backend(monkeypatch):
    x = torch.randn(N, C)
    _raises(r"topk_log_probs: k must be a positive integer, got 0", topk_log_probs, x, 0)
    _raises(r"topk_log_probs: k must be a positive integer, got 2.5", topk_log_probs, x, 2.5)
    bad = x.clone()
    bad[2, 2] = float("nan")
    _raises(r"topk_log_probs: teacher targets contain NaN or inf", topk_log_probs, bad, 3, backend="triton")
    _raises(r"topk_log_probs: empty input", topk_log_probs, x[:0], 3)
    _raises(r"loss.kd_backend must be one of auto, reference, triton, got 'gpu'", select_kd_loss, "gpu")
    _raises(r"loss.kd_backend must be one of", select_kd_loss_sparse, "fast")
    monkeypatch.setattr(triton_kd, "interpreted", lambda: False)
    _raises(r"backend 'triton' on CPU tensors needs TRITON_INTERPRET=1", kd_loss, x, x, backend="triton")
    monkeypatch.setattr(kernels, "_triton_ops", lambda: None)
    _raises(r"backend 'triton' asked for but triton cannot be imported", kd_loss, x, x, backend="triton")
    assert kernels.resolve_backend("auto", [x], "x") == "reference"
