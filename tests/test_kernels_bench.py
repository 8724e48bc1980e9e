"""bench/kd_loss.py runs on the CPU (tiny sizes) and says that it did not run on a GPU."""
from __future__ import annotations


def test_bench_runs_on_cpu(run_bench, capsys):
    run_bench("kd_loss", ["--cpu-small", "--frames", "33", "--classes", "10", "--hidden", "8", "--topk", "3",
                          "--reps", "1", "--warmup", "0", "--no-compile"])
    out = capsys.readouterr().out
    assert "NOT run on a GPU" in out and "memory not measured" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:3] in (
        [op, "33", "10"] for op in ("kd", "sparse", "fused", "topk"))]
    assert {(r[0], r[3]) for r in rows} >= {(op, impl) for op in ("kd", "sparse", "fused", "topk")
                                           for impl in ("eager", "ours")}
    # every row agrees with eager on the loss value (last column: relative difference)
    assert all(float(r[-1]) < 1e-5 for r in rows)
