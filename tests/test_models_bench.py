"""bench/blstm_layer.py runs (tiny sizes) and reports both BLSTM implementations and the ratio."""
from __future__ import annotations


def test_blstm_bench_runs(run_bench, capsys):
    result = run_bench("blstm_layer", ["--utts", "4", "--min-steps", "3", "--max-steps", "9", "--input", "6",
                                       "--cells", "8", "--layers", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "2 x 8 BLSTM" in out and "ratio packed / padded" in out
    assert all(result[k] > 0 for k in ("packed", "padded", "LSTM"))
    assert result["ratio"] == result["packed"] / result["padded"]
