"""asrkt.io.posterior: Kaldi Posterior round trips through kaldi_native_io, atomic writes, top-k conversion."""
from __future__ import annotations

import kaldi_native_io as kni
import kaldiio
import numpy as np
import pytest

from asrkt.bin import copy_post
from asrkt.io import (MatrixWriter, PosteriorWriter, load_posterior_scp, posterior_to_topk, read_posteriors,
                      topk_to_posterior)
from asrkt.utils.errors import AsrktError

POSTS = {
    "spk1-utt1": [[(3, 0.75), (1, 0.25)], [(0, 1.0)], []],
    "spk1-utt2": [[(2, 0.5), (7, 0.5)]],
    "spk2-utt1": [[(5, 0.125), (4, 0.875)], [(9, 1.0)]],
}


def _same(got, want):
    assert list(got) == list(want)
    for k in want:
        assert len(got[k]) == len(want[k])
        for fg, fw in zip(got[k], want[k]):
            assert [i for i, _ in fg] == [i for i, _ in fw]
            np.testing.assert_allclose([w for _, w in fg], [w for _, w in fw], rtol=1e-6)


def _write(spec, posts=POSTS):
    with PosteriorWriter(spec) as w:
        for k, p in posts.items():
            w.write(k, p)
    return w


def test_round_trip_ark_scp_points_at_final_ark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write("ark,scp:post/post.1.ark,post/post.1.scp")
    assert sorted(p.name for p in (tmp_path / "post").iterdir()) == ["post.1.ark", "post.1.scp"]
    lines = (tmp_path / "post/post.1.scp").read_text().splitlines()
    assert [ln.split()[1].rsplit(":", 1)[0] for ln in lines] == [str(tmp_path / "post/post.1.ark")] * 3
    _same(dict(read_posteriors("scp:post/post.1.scp")), POSTS)
    _same(dict(read_posteriors("ark:post/post.1.ark")), POSTS)
    _same(dict(read_posteriors("ark:cat post/post.1.ark |")), POSTS)
    # Plain kaldi_native_io (what Kaldi nnet1 would do) reads the final scp by random access.
    reader = kni.RandomAccessPosteriorReader("scp:post/post.1.scp")
    _same({"spk2-utt1": reader["spk2-utt1"]}, {"spk2-utt1": POSTS["spk2-utt1"]})
    lazy = load_posterior_scp("post/post.1.scp")
    assert len(lazy) == 3 and "spk1-utt2" in lazy and list(lazy) == list(POSTS)
    _same({k: lazy[k] for k in lazy}, POSTS)
    with pytest.raises(KeyError):
        lazy["nope"]


def test_text_form_and_numpy_scalars(tmp_path):
    posts = {"u": [[(np.int64(2), np.float32(0.5)), (np.int32(1), 0.5)]]}
    _write(f"ark,t:{tmp_path}/p.txt", posts)
    assert (tmp_path / "p.txt").read_text().strip() == "u [ 2 0.5 1 0.5 ]"
    _same(dict(read_posteriors(f"ark:{tmp_path}/p.txt")), {"u": [[(2, 0.5), (1, 0.5)]]})


def test_exception_inside_writer_leaves_nothing_and_keeps_old_output(tmp_path):
    spec = f"ark,scp:{tmp_path}/p.ark,{tmp_path}/p.scp"
    with pytest.raises(RuntimeError, match="boom"):
        with PosteriorWriter(spec) as w:
            w.write("u", POSTS["spk1-utt1"])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    _write(spec)
    before = ((tmp_path / "p.ark").read_bytes(), (tmp_path / "p.scp").read_bytes())
    with pytest.raises(AsrktError, match=r"p\.ark, utterance 'u': duplicate key"):
        _write_dup(spec)
    assert ((tmp_path / "p.ark").read_bytes(), (tmp_path / "p.scp").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.ark", "p.scp"]


def _write_dup(spec):
    with PosteriorWriter(spec) as w:
        w.write("u", [[(1, 1.0)]])
        w.write("u", [[(1, 1.0)]])


def test_bad_posteriors_and_keys(tmp_path):
    with pytest.raises(AsrktError, match=r"utterance 'u': posterior must be a list"):
        _write(f"ark:{tmp_path}/p.ark", {"u": [[(1, "x")]]})
    with pytest.raises(AsrktError, match="without whitespace"):
        _write(f"ark:{tmp_path}/p.ark", {"a b": [[(1, 1.0)]]})
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_missing_posteriors(tmp_path):
    _write(f"ark:{tmp_path}/p.ark")
    data = (tmp_path / "p.ark").read_bytes()
    (tmp_path / "t.ark").write_bytes(data[:-3])
    with pytest.raises(AsrktError) as e:
        list(read_posteriors(f"ark:{tmp_path}/t.ark"))
    assert "t.ark" in str(e.value) and "after utterance 'spk1-utt2'" in str(e.value)
    assert "truncated or corrupt" in str(e.value)
    with pytest.raises(AsrktError, match=r"absent\.ark: archive not found"):
        list(read_posteriors(f"ark:{tmp_path}/absent.ark"))
    with pytest.raises(AsrktError, match=r"'false \|': command failed with exit status 1"):
        list(read_posteriors("ark:false |"))
    (tmp_path / "bad.scp").write_text("u\n")
    with pytest.raises(AsrktError, match=r"bad\.scp:1, utterance 'u': missing value"):
        list(read_posteriors(f"scp:{tmp_path}/bad.scp"))


def test_dense_posteriors_readable_by_plain_kaldiio(tmp_path):
    logp = np.log(np.random.default_rng(0).dirichlet(np.ones(6), size=9)).astype(np.float32)
    with MatrixWriter(f"ark,scp:{tmp_path}/post.1.ark,{tmp_path}/post.1.scp") as w:
        w.write("u", logp)
    np.testing.assert_array_equal(kaldiio.load_scp(str(tmp_path / "post.1.scp"))["u"], logp)
    with kaldiio.ReadHelper(f"ark:{tmp_path}/post.1.ark") as r:
        (key, arr), = list(r)
    assert key == "u" and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, logp)


def test_topk_to_posterior_drops_padding():
    idx = np.array([[4, 1, 0], [2, 0, 0], [7, 3, -1]])
    val = np.array([[0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    assert topk_to_posterior(idx, val) == [[(4, pytest.approx(0.7)), (1, pytest.approx(0.3))],
                                           [(2, 1.0)], [(7, 0.5), (3, 0.5)]]
    val_inf = np.where(val > 0, val, -np.inf)
    assert topk_to_posterior(idx, val_inf) == topk_to_posterior(idx, val)
    with pytest.raises(AsrktError, match="for log-probabilities pass exp"):
        topk_to_posterior(idx, np.log(np.clip(val, 1e-9, 1)))
    with pytest.raises(AsrktError, match=r"must both be \(T, k\)"):
        topk_to_posterior(idx[:, :2], val)
    with pytest.raises(AsrktError, match="indices must be integers"):
        topk_to_posterior(idx.astype(np.float32), val)


def test_posterior_to_topk_pads_and_truncates():
    post = [[(1, 0.1), (5, 0.6), (2, 0.3)], [(3, 1.0)], []]
    idx, w = posterior_to_topk(post, 2)
    assert idx.dtype == np.int64 and w.dtype == np.float32 and idx.shape == w.shape == (3, 2)
    assert idx.tolist() == [[5, 2], [3, 0], [0, 0]]
    np.testing.assert_allclose(w, [[0.6, 0.3], [1.0, 0.0], [0.0, 0.0]], rtol=1e-6)
    # Round trip through the Kaldi form.
    back = topk_to_posterior(*posterior_to_topk(post, 3))
    assert [[i for i, _ in f] for f in back] == [[5, 2, 1], [3], []]
    with pytest.raises(AsrktError, match="k must be >= 1"):
        posterior_to_topk(post, 0)


def test_topk_from_torch():
    torch = pytest.importorskip("torch")
    probs = torch.softmax(torch.randn(4, 10), dim=-1)
    v, i = probs.topk(3, dim=-1)
    post = topk_to_posterior(i, v)
    assert [len(f) for f in post] == [3] * 4
    idx, w = posterior_to_topk(post, 3)
    np.testing.assert_array_equal(idx, i.numpy())
    np.testing.assert_allclose(w, v.numpy(), rtol=1e-6)


def test_copy_post_cli(tmp_path, capfd):
    _write(f"ark:{tmp_path}/a.ark")
    copy_post.main([f"ark:{tmp_path}/a.ark", f"ark,scp:{tmp_path}/b.ark,{tmp_path}/b.scp"])
    _same(dict(read_posteriors(f"scp:{tmp_path}/b.scp")), POSTS)
    capfd.readouterr()
    copy_post.main(["--text", f"scp:{tmp_path}/b.scp", "ark:-"])  # kaldi_native_io writes to fd 1
    assert capfd.readouterr().out.splitlines()[1] == "spk1-utt2 [ 2 0.5 7 0.5 ] "
    with pytest.raises(SystemExit) as e:
        copy_post.main([f"ark:{tmp_path}/missing.ark", "ark:-"])
    assert e.value.code == 1 and "ERROR: " in capfd.readouterr().err


def test_write_topk_fast_path(tmp_path):
    import gc
    idx = np.array([[4, 1], [2, 0]])
    val = np.array([[0.75, 0.25], [1.0, 0.0]], dtype=np.float32)
    with PosteriorWriter(f"ark:{tmp_path}/p.ark") as w:
        w.write_topk("u", idx, val)
    assert gc.isenabled()
    _same(dict(read_posteriors(f"ark:{tmp_path}/p.ark")), {"u": [[(4, 0.75), (1, 0.25)], [(2, 1.0)]]})
