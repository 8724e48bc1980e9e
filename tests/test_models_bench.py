"""bench/blstm_layer.py runs (tiny sizes) and reports both BLSTM implementations and the ratio."""
from __future__ import annotations

import importlib.util

import torch


def test_blstm_bench_runs(repo_root, capsys):
    spec = importlib.util.spec_from_file_location("bench_blstm_layer", repo_root / "bench" / "blstm_layer.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--utts", "4", "--min-steps", "3", "--max-steps", "9", "--input", "6", "--cells", "8",
                             "--layers", "2", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "2 x 8 BLSTM" in out and "ratio packed / padded" in out
    assert all(result[k] > 0 for k in ("packed", "padded", "LSTM"))
    assert result["ratio"] == result["packed"] / result["padded"]
