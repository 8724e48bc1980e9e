"""asrkt.io on kaldi-native-io: int32 and float vectors, absolute scp paths, truncated/corrupt input in one line."""
from __future__ import annotations

import os

import kaldi_native_io as kni
import numpy as np
import pytest

from asrkt.io import (IntVectorWriter, MatrixWriter, PosteriorWriter, load_int_vector_scp, load_posterior_scp,
                      load_scp, merge_scp, read_int_vectors, read_matrices, read_posteriors, read_vectors,
                      write_int_vectors, write_matrices)
from asrkt.utils.errors import AsrktError

ALI = {"spk1-utt1": np.array([3, 1, 4, 1, 5], np.int32), "spk1-utt2": np.zeros(0, np.int32),
       "spk2-utt1": np.array([-1, 2**31 - 1, 0], np.int32)}


def _same(got: dict, want: dict):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("text", [False, True])
def test_int_vectors_round_trip(tmp_path, text):
    t = ",t" if text else ""
    with IntVectorWriter(f"ark{t},scp:{tmp_path}/ali.ark,{tmp_path}/ali.scp") as w:
        for k, v in ALI.items():
            w.write(k, v.astype(np.int64) if k == "spk1-utt1" else v.tolist())
    assert w.num_written == 3
    _same(dict(read_int_vectors(f"ark:{tmp_path}/ali.ark")), ALI)
    _same(dict(read_int_vectors(f"scp:{tmp_path}/ali.scp")), ALI)
    _same(dict(read_int_vectors(f"ark:cat {tmp_path}/ali.ark |")), ALI)
    _same(dict(read_matrices(f"ark:{tmp_path}/ali.ark")), ALI)  # the type is peeked at
    _same(dict(read_matrices(f"scp:{tmp_path}/ali.scp")), ALI)
    lazy = load_int_vector_scp(tmp_path / "ali.scp")
    _same({k: lazy[k] for k in reversed(list(lazy))}, dict(reversed(list(ALI.items()))))
    _same({k: load_scp(tmp_path / "ali.scp")[k] for k in ALI}, ALI)
    # Kaldi's own reader agrees.
    assert {k: list(v) for k, v in kni.SequentialInt32VectorReader(f"scp:{tmp_path}/ali.scp")} == \
        {k: v.tolist() for k, v in ALI.items()}


def test_reads_int_vectors_kaldi_wrote(tmp_path):
    with kni.Int32VectorWriter(f"ark:{tmp_path}/a.ark") as w:
        w.write("u", [7, 8, 9])
    assert dict(read_int_vectors(f"ark:{tmp_path}/a.ark"))["u"].tolist() == [7, 8, 9]
    assert write_int_vectors(f"ark:| cat > {tmp_path}/p.ark", {"u": [1, 2]}) == 1
    assert dict(read_int_vectors(f"ark:{tmp_path}/p.ark"))["u"].tolist() == [1, 2]


@pytest.mark.parametrize("value,fragment", [
    (np.ones((2, 2), np.int32), "must be 1-D integers"),
    (np.array([0.5, 1.0]), "must be 1-D integers"),
    (np.array([2**31], np.int64), "int32 range"),
])
def test_bad_int_vectors(tmp_path, value, fragment):
    with pytest.raises(AsrktError, match=fr"o\.ark, utterance 'u': .*{fragment}"):
        write_int_vectors(f"ark,scp:{tmp_path}/o.ark,{tmp_path}/o.scp", {"u": value})
    assert list(tmp_path.iterdir()) == []


def test_float_vectors(tmp_path):
    vecs = {"a": np.arange(3, dtype=np.float32), "b": np.zeros(0, np.float32)}
    write_matrices(f"ark,scp:{tmp_path}/v.ark,{tmp_path}/v.scp", vecs)
    _same(dict(read_vectors(f"scp:{tmp_path}/v.scp")), vecs)
    _same(dict(read_vectors(f"ark:cat {tmp_path}/v.ark |")), vecs)  # a pipe cannot be peeked at: asked for
    assert dict(read_vectors(f"ark:{tmp_path}/v.ark", dtype=np.float64))["a"].dtype == np.float64


def test_empty_output_is_an_empty_archive(tmp_path):
    for writer in (MatrixWriter, IntVectorWriter, PosteriorWriter):
        with writer(f"ark,scp:{tmp_path}/e.ark,{tmp_path}/e.scp"):
            pass
        assert (tmp_path / "e.ark").read_bytes() == b"" and (tmp_path / "e.scp").read_text() == ""
        assert list(read_matrices(f"ark:{tmp_path}/e.ark")) == []


# ------------------------------------------------------------------------------------------------ absolute scp
def test_scp_written_from_a_relative_wspecifier_reads_from_another_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    mats = {"u1": np.ones((2, 3), np.float32), "u2": np.zeros((1, 3), np.float32)}
    write_matrices("ark,scp:feats.1.ark,feats.1.scp", {"u2": mats["u2"]})
    write_matrices("ark,scp:feats.2.ark,feats.2.scp", {"u1": mats["u1"]})
    with PosteriorWriter("ark,scp:post.ark,post.scp") as w:
        w.write("u1", [[(3, 1.0)], [(1, 0.25), (2, 0.75)]])
    write_int_vectors("ark,scp:ali.ark,ali.scp", {"u1": [4, 2]})
    # A shard script with relative paths (written by an older tool) is made absolute by merging.
    (tmp_path / "a/rel.scp").write_text((tmp_path / "a/feats.1.scp").read_text().replace(str(tmp_path / "a") + "/", ""))
    merge_scp(["rel.scp", "feats.2.scp"], "feats.scp")
    monkeypatch.chdir(tmp_path / "b")
    for name in ("feats.1.scp", "post.scp", "ali.scp", "feats.scp"):
        for line in (tmp_path / "a" / name).read_text().splitlines():
            assert line.split(" ", 1)[1].startswith(str(tmp_path / "a") + "/"), (name, line)
    got = load_scp(tmp_path / "a/feats.scp")
    assert list(got) == ["u1", "u2"] and all(np.array_equal(got[k], mats[k]) for k in mats)
    assert load_posterior_scp(tmp_path / "a/post.scp")["u1"][1] == [(1, 0.25), (2, 0.75)]
    assert dict(read_posteriors(f"scp:{tmp_path}/a/post.scp"))["u1"][0] == [(3, 1.0)]
    assert dict(read_int_vectors(f"scp:{tmp_path}/a/ali.scp"))["u1"].tolist() == [4, 2]


# ------------------------------------------------------------------------------------------------ bad input
def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "/project/" not in msg, msg
    return msg


def test_truncated_and_corrupt_objects_behind_a_script(tmp_path, capfd):
    mats = {"a": np.ones((4, 3), np.float32), "b": np.ones((5, 3), np.float32)}
    write_matrices(f"ark,scp:{tmp_path}/m.ark,{tmp_path}/m.scp", mats)
    data = (tmp_path / "m.ark").read_bytes()
    (tmp_path / "m.ark").write_bytes(data[:-8])  # the archive was cut after the script was written
    with pytest.raises(AsrktError) as e:
        list(read_matrices(f"scp:{tmp_path}/m.scp"))
    msg = _one_line(e)
    assert msg.startswith(f"{tmp_path}/m.scp:2, utterance 'b': cannot read float32 '{tmp_path}/m.ark:")
    assert "truncated" in msg
    with pytest.raises(AsrktError) as e:
        load_scp(tmp_path / "m.scp")["b"]
    assert "m.scp:2, utterance 'b'" in _one_line(e)
    np.testing.assert_array_equal(load_scp(tmp_path / "m.scp")["a"], mats["a"])
    assert [k for k, _ in read_matrices(f"scp,p:{tmp_path}/m.scp")] == ["a"]
    assert "/project/" not in capfd.readouterr().err


def test_corrupt_int_vectors_and_posteriors(tmp_path):
    write_int_vectors(f"ark:{tmp_path}/a.ark", ALI)
    data = bytearray((tmp_path / "a.ark").read_bytes())
    i = data.index(b"spk1-utt2")
    data[i - 5] = 9  # the size byte of the last element of spk1-utt1
    (tmp_path / "c.ark").write_bytes(bytes(data))
    with pytest.raises(AsrktError) as e:
        list(read_int_vectors(f"ark:{tmp_path}/c.ark"))
    assert "c.ark: error reading int32 vector objects before the first utterance" in _one_line(e)
    with PosteriorWriter(f"ark:{tmp_path}/p.ark") as w:
        w.write("u1", [[(1, 1.0)]])
        w.write("u2", [[(2, 0.5), (3, 0.5)]])
    (tmp_path / "t.ark").write_bytes((tmp_path / "p.ark").read_bytes()[:-2])
    with pytest.raises(AsrktError) as e:
        list(read_posteriors(f"ark:{tmp_path}/t.ark"))
    assert "t.ark: error reading posteriors after utterance 'u1'" in _one_line(e)
    # Reading posteriors as matrices names the mismatch.
    with pytest.raises(AsrktError) as e:
        list(read_matrices(f"ark:{tmp_path}/p.ark"))
    assert "p.ark: error reading" in _one_line(e)


def test_failing_write_command_names_its_status(tmp_path):
    with pytest.raises(AsrktError, match=r"'\| cat > /dev/null; exit 4': output command failed with exit status 4"):
        write_int_vectors("ark:| cat > /dev/null; exit 4", ALI)
    with pytest.raises(AsrktError, match=r"exit status 5"):
        with PosteriorWriter("ark:| cat > /dev/null; exit 5") as w:
            w.write("u", [[(1, 1.0)]])
    assert os.listdir(tmp_path) == []
