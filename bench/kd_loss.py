#!/usr/bin/env python3
"""Benchmark of the soft-target (KD) loss: forward + backward time, peak memory and bandwidth.

Compares in one run, on the same inputs:
  eager    the pure-PyTorch loss of record (asrkt.losses.kd), autograd backward
  compile  torch.compile of the same eager code
  liger    Liger-Kernel where it computes the same thing (optional: pip install liger-kernel; GPU only):
           LigerKLDIVLoss (log_target, batchmean) on eager log-softmaxes for the dense loss, and
           LigerFusedLinearJSD with jsd_beta=0 (forward KL(p||q)) for the fused output layer. The latter
           takes the teacher as hidden states and a weight, so it also runs the teacher's GEMM.
  ours     asrkt.kernels with backend "auto": Triton kernels on a GPU, the PyTorch reference on CPU.

Operations: ``kd`` (dense teacher), ``sparse`` (top-k teacher), ``fused`` (output layer + KD loss from
hidden states, dense teacher; hidden size --hidden), ``topk`` (dump-stage log-softmax + top-k; forward
only). The "achieved" column is memory bandwidth from the minimum traffic of each operation (for
``fused``: TFLOP/s of its three GEMMs), compared with the device's peak bandwidth.

Usage:
  python bench/kd_loss.py                      # GPU: frames {4k, 32k} x classes {100, 2k, 10k}
  python bench/kd_loss.py --cpu-small          # CPU: small sizes, time only
  python bench/kd_loss.py --ops kd fused --frames 32768 --classes 10000 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asrkt import kernels  # noqa: E402
from asrkt.losses.kd import kd_loss_reference, kd_loss_sparse_reference  # noqa: E402
from asrkt.losses.kd import topk_log_probs as topk_reference  # noqa: E402

OPS = ("kd", "sparse", "fused", "topk")
# Peak HBM bandwidth (GB/s) by device name, when the driver does not report clock and bus width.
KNOWN_PEAK_GBS = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000,
                  "H100 NVL": 3900, "A100-SXM4-80GB": 2039, "A100-SXM4-40GB": 1555, "A100 80GB PCIe": 1935}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-small", action="store_true",
                   help="small sizes for a CPU run (frames {1024, 4096}, classes {100, 2000}, hidden 256)")
    p.add_argument("--frames", type=int, nargs="+", default=None, help="default: 4096 32768")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="default: 100 2000 10000")
    p.add_argument("--hidden", type=int, default=None, help="hidden size of the fused output layer (512)")
    p.add_argument("--topk", type=int, default=20, help="k of the sparse teacher and of the top-k op")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--peak-gbs", type=float, default=None, help="device peak bandwidth in GB/s")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default on CPU: 1, stable timings on a shared machine)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn, device, reps: int, warmup: int):
    """(median seconds, fastest seconds, peak extra bytes over what was allocated before or None on CPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    base = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() - base if base is not None else None
    return statistics.median(times), min(times), peak


def device_peak_gbs(device, override):
    if override:
        return override
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9  # double data rate
    for name, gbs in KNOWN_PEAK_GBS.items():
        if name in props.name:
            return gbs
    return None


# ----------------------------------------------------------------------------------------- the cases
def grad_step(loss_fn, leaves):
    """A closure running forward + backward (gradients for ``leaves``) and returning the loss."""
    def run():
        loss = loss_fn()
        torch.autograd.grad(loss, leaves)
        return loss
    return run


def liger_modules():
    """(LigerKLDIVLoss class or None, LigerFusedLinearJSD class or None, reason when absent)."""
    try:
        import liger_kernel.transformers as lt
    except Exception as e:  # noqa: BLE001 - optional dependency, any import failure means "skip"
        return None, None, f"liger-kernel not importable ({type(e).__name__}: {e}); pip install liger-kernel"
    kl = getattr(lt, "LigerKLDIVLoss", None) or getattr(lt, "LigerKLDivLoss", None)
    jsd = getattr(lt, "LigerFusedLinearJSD", None)
    return kl, jsd, None


def build_cases(op, n, c, args, device, dtype, compile_mode, liger):
    """[(impl name, closure, bytes or flops moved, unit)] for one operation and size."""
    g = torch.Generator(device="cpu").manual_seed(0)
    T = args.temperature
    elem = torch.finfo(dtype).bits // 8
    student = (3 * torch.randn(n, c, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    cases = []

    def compiled(fn):
        return torch.compile(fn, dynamic=compile_mode == "dynamic")

    if op == "kd":
        teacher = (2 * torch.randn(n, c, generator=g)).to(device=device, dtype=dtype)
        traffic = 5 * n * c * elem  # forward reads s, t; backward reads s, t, writes grad
        eager = lambda: kd_loss_reference(student, teacher, T)  # noqa: E731
        cases.append(("eager", grad_step(eager, [student]), traffic))
        if compile_mode:
            ck = compiled(kd_loss_reference)
            cases.append(("compile", grad_step(lambda: ck(student, teacher, T), [student]), traffic))
        if liger[0] is not None and device.type == "cuda":
            loss_mod = liger[0](reduction="batchmean", log_target=True)

            def liger_kd():
                log_q = F.log_softmax(student.float() / T, dim=-1)
                log_p = F.log_softmax(teacher.float() / T, dim=-1)
                return loss_mod(log_q, log_p) * T ** 2
            cases.append(("liger KLDiv", grad_step(liger_kd, [student]), traffic))
        ours = lambda: kernels.kd_loss(student, teacher, T)  # noqa: E731
        cases.append(("ours", grad_step(ours, [student]), traffic))
    elif op == "sparse":
        k = min(args.topk, c)
        values, indices = (2 * torch.randn(n, c, generator=g)).log_softmax(-1).topk(k, dim=-1)
        indices, values = indices.to(device), values.to(device)
        traffic = 3 * n * c * elem + 2 * n * k * 12
        eager = lambda: kd_loss_sparse_reference(student, indices, values, T)  # noqa: E731
        cases.append(("eager", grad_step(eager, [student]), traffic))
        if compile_mode:
            cs = compiled(kd_loss_sparse_reference)
            cases.append(("compile", grad_step(lambda: cs(student, indices, values, T), [student]), traffic))
        ours = lambda: kernels.kd_loss_sparse(student, indices, values, T)  # noqa: E731
        cases.append(("ours", grad_step(ours, [student]), traffic))
    elif op == "fused":
        h_dim = args.hidden
        hidden = torch.randn(n, h_dim, generator=g).to(device=device, dtype=dtype).requires_grad_()
        weight = (torch.randn(c, h_dim, generator=g) / math.sqrt(h_dim)).to(device=device, dtype=dtype)
        weight.requires_grad_()
        bias = torch.zeros(c, device=device, dtype=dtype, requires_grad=True)
        # The teacher as hidden states and a weight (what Liger's fused JSD takes); the others get the
        # logits they produce.
        t_hidden = torch.randn(n, h_dim, generator=g).to(device=device, dtype=dtype)
        t_weight = (torch.randn(c, h_dim, generator=g) / math.sqrt(h_dim)).to(device=device, dtype=dtype)
        teacher = (t_hidden @ t_weight.t()).detach()
        flops = 6 * n * c * h_dim
        leaves = [hidden, weight, bias]

        def eager_fused():
            return kd_loss_reference(F.linear(hidden, weight, bias), teacher, T)
        cases.append(("eager", grad_step(eager_fused, leaves), flops))
        if compile_mode:
            cf = compiled(eager_fused)
            cases.append(("compile", grad_step(cf, leaves), flops))
        if liger[1] is not None and device.type == "cuda":
            jsd = liger[1](jsd_beta=0.0, temperature=T)

            def liger_fused():  # no bias in Liger's API; it also computes the teacher's logits
                return jsd(hidden, weight, t_hidden, t_weight, None) * T ** 2
            cases.append(("liger FusedLinearJSD", grad_step(liger_fused, [hidden, weight]), flops))
        def ours_fused():
            return kernels.fused_linear_kd_loss(hidden, weight, bias, teacher=teacher, temperature=T)
        cases.append(("ours", grad_step(ours_fused, leaves), flops))
    elif op == "topk":
        teacher = (2 * torch.randn(n, c, generator=g)).to(device=device, dtype=dtype)
        k = args.topk
        traffic = n * c * elem + n * min(k, c) * 12
        cases.append(("eager", lambda: topk_reference(teacher, k), traffic))
        if compile_mode:
            ct = compiled(topk_reference)
            cases.append(("compile", lambda: ct(teacher, k), traffic))
        cases.append(("ours", lambda: kernels.topk_log_probs(teacher, k), traffic))
    return cases


def first_value(out):
    out = out[1] if isinstance(out, tuple) else out
    return out.detach().double().sum().item()


# --------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    dtype = getattr(torch, args.dtype)
    small = args.cpu_small or device.type == "cpu"
    frames = args.frames or ([1024, 4096] if small else [4096, 32768])
    classes = args.classes or ([100, 2000] if small else [100, 2000, 10000])
    args.hidden = args.hidden or (256 if small else 512)
    reps = args.reps or (5 if device.type == "cpu" else 20)
    compile_mode = None if args.no_compile else ("static" if device.type == "cuda" else "dynamic")
    liger = liger_modules()
    peak_gbs = device_peak_gbs(device, args.peak_gbs)

    print(f"# torch {torch.__version__}, dtype {args.dtype}, temperature {args.temperature}, top-k {args.topk}, "
          f"hidden {args.hidden}, {torch.get_num_threads()} CPU thread(s); ms = median of {reps} reps after "
          f"{args.warmup} warm-up, ratio from medians")
    if device.type == "cuda":
        print(f"# device: {torch.cuda.get_device_name(device)}; peak bandwidth "
              f"{f'{peak_gbs:.0f} GB/s' if peak_gbs else 'unknown (give --peak-gbs)'}; "
              "peak memory = torch.cuda.max_memory_allocated beyond the inputs")
    else:
        print("# device: CPU -- NOT run on a GPU. 'ours' is the dispatcher's CPU path, i.e. the PyTorch "
              "reference (the fused op runs its chunked PyTorch twin), not the Triton kernels; memory not "
              "measured on CPU; no bandwidth figures.")
        if not args.cpu_small:
            print("# (no GPU: using the --cpu-small sizes unless --frames/--classes were given)")
    if liger[2]:
        print(f"# liger: skipped: {liger[2]}")
    elif device.type != "cuda":
        print("# liger: skipped: its Triton kernels need a GPU")
    if compile_mode:
        # The sparse reference checks its indices with .item(): a known graph break, not worth a warning.
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
        print(f"# torch.compile: {compile_mode} shapes; compilation excluded from the timings (warm-up); the "
              "sparse reference has a graph break at its index check (.item())")
    else:
        print("# torch.compile: skipped (--no-compile)")

    header = f"{'op':7} {'frames':>6} {'classes':>7} {'impl':22} {'ms':>9} {'min ms':>9} {'vs eager':>8} " \
             f"{'peak MiB':>9} " \
             f"{'achieved':>12} {'%peak':>6} {'loss rel.diff':>13}"
    print(header)
    print("-" * len(header))
    for op in args.ops:
        for n in frames:
            for c in classes:
                cases = build_cases(op, n, c, args, device, dtype, compile_mode, liger)
                eager_time = eager_value = None
                for impl, fn, work in cases:
                    try:
                        value = first_value(fn())
                        t, t_min, peak = measure(fn, device, reps, args.warmup)
                    except Exception as e:  # noqa: BLE001 - report and go on with the other rows
                        print(f"{op:7} {n:>6} {c:>7} {impl:22} failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:80]}")
                        continue
                    if impl == "eager":
                        eager_time, eager_value = t, value
                    ratio = f"{eager_time / t:7.2f}x" if eager_time else "-"
                    mem = f"{peak / 2**20:9.1f}" if peak is not None else "-"
                    if op == "fused":
                        achieved, pct = f"{work / t / 1e12:7.2f} TFLOP/s", "-"
                    elif device.type == "cuda":
                        gbs = work / t / 1e9
                        achieved = f"{gbs:8.0f} GB/s"
                        pct = f"{100 * gbs / peak_gbs:5.1f}%" if peak_gbs else "-"
                    else:
                        achieved, pct = "-", "-"
                    diff = abs(value - eager_value) / max(abs(eager_value), 1e-30) if eager_value is not None else 0
                    print(f"{op:7} {n:>6} {c:>7} {impl:22} {t * 1e3:9.3f} {t_min * 1e3:9.3f} {ratio:>8} {mem:>9} "
                          f"{achieved:>12} "
                          f"{pct:>6} {diff:13.2e}")
                del cases
                if device.type == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
