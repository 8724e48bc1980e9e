"""asrkt.io specifiers and matrix archives: round trips, pipes, atomic writes, truncated/corrupt input."""
from __future__ import annotations

import os
import subprocess
import sys

import kaldi_native_io as kni
import kaldiio
import numpy as np
import pytest

from asrkt.bin import copy_matrix, matrix_info
from asrkt.io import (MatrixWriter, load_scp, parse_rspecifier, parse_wspecifier, read_matrices,
                      write_matrices)
from asrkt.utils.errors import AsrktError

PY = sys.executable


@pytest.fixture
def mats():
    rng = np.random.default_rng(0)
    return {
        "spk1-utt1": rng.standard_normal((7, 5)).astype(np.float32),
        "spk1-utt2": rng.standard_normal((3, 5)).astype(np.float32),
        "spk2-utt1": rng.standard_normal((11, 5)).astype(np.float32),
    }


def _assert_same(got: dict, want: dict, rtol=0.0, atol=0.0):
    assert list(got) == list(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------ specifiers
def test_parse_rspecifier_forms():
    r = parse_rspecifier("ark:feats.ark")
    assert (r.kind, r.target, r.is_file) == ("ark", "feats.ark", True)
    r = parse_rspecifier("scp,s,cs:data/feats.scp")
    assert (r.kind, r.sorted, r.called_sorted, r.once) == ("scp", True, True, False)
    r = parse_rspecifier("ark:gunzip -c a.ark.gz |")
    assert r.is_pipe and r.command == "gunzip -c a.ark.gz"
    r = parse_rspecifier("ark,p,o:-")
    assert r.is_stdin and r.permissive and r.once
    assert parse_rspecifier("ark:C:/x.ark").target == "C:/x.ark"  # only the first colon splits


def test_parse_wspecifier_forms():
    w = parse_wspecifier("ark,scp:a.ark,a.scp")
    assert (w.ark, w.scp, w.text) == ("a.ark", "a.scp", False)
    w = parse_wspecifier("scp,ark,t,f:x.ark,x.scp")  # Kaldi: the first file is the archive, whatever the order
    assert (w.ark, w.scp, w.text, w.flush) == ("x.ark", "x.scp", True, True)
    w = parse_wspecifier("ark,t:-")
    assert (w.ark, w.scp, w.text, w.ark_is_file) == ("-", None, True, False)
    w = parse_wspecifier("ark:| gzip -c > a.gz")
    assert w.ark == "| gzip -c > a.gz" and not w.ark_is_file


@pytest.mark.parametrize("spec,fragment", [
    ("feats.ark", "expected 'ark:FILE'"),
    ("ark,scp:a.ark", "exactly one of 'ark' or 'scp'"),
    ("arc:a.ark", "unknown option 'arc'"),
    ("ark:", "no file name"),
    ("ark:| cat a.ark", "reading pipe ends with '|'"),
    ("ark,,s:a.ark", "empty option"),
])
def test_parse_rspecifier_errors(spec, fragment):
    with pytest.raises(AsrktError, match=None) as e:
        parse_rspecifier(spec)
    assert fragment in str(e.value) and spec in str(e.value)


@pytest.mark.parametrize("spec,fragment", [
    ("a.ark", "expected 'ark:FILE'"),
    ("ark,scp:a.ark", "needs two file names"),
    ("scp:a.scp", "writing only a script"),
    ("ark,scp:-,a.scp", "needs the archive to be a file"),
    ("ark:cat > a |", "writing pipe starts with '|'"),
    ("ark,x:a.ark", "unknown option 'x'"),
])
def test_parse_wspecifier_errors(spec, fragment):
    with pytest.raises(AsrktError) as e:
        parse_wspecifier(spec)
    assert fragment in str(e.value) and spec in str(e.value)


# ------------------------------------------------------------------------------------------------ round trips
def test_ark_scp_round_trip_offsets_point_at_final_ark(tmp_path, monkeypatch, mats):
    monkeypatch.chdir(tmp_path)
    with MatrixWriter("ark,scp:out/feats.ark,out/feats.scp") as w:
        for k, v in mats.items():
            w.write(k, v)
        assert _files(tmp_path / "out") == [".feats.ark.tmp%d" % os.getpid(), ".feats.scp.tmp%d" % os.getpid()]
    assert _files(tmp_path / "out") == ["feats.ark", "feats.scp"]
    lines = (tmp_path / "out/feats.scp").read_text().splitlines()
    assert [ln.split()[1].rsplit(":", 1)[0] for ln in lines] == [str(tmp_path / "out/feats.ark")] * 3  # absolute
    # Plain kaldiio and Kaldi's own C++ reader agree with us.
    _assert_same(dict(kaldiio.load_scp("out/feats.scp")), mats)
    _assert_same({k: np.array(v) for k, v in kni.SequentialFloatMatrixReader("scp:out/feats.scp")}, mats)
    _assert_same(dict(read_matrices("scp:out/feats.scp")), mats)
    _assert_same(dict(read_matrices("ark:out/feats.ark")), mats)
    lazy = load_scp("out/feats.scp")
    assert len(lazy) == 3 and "spk1-utt2" in lazy and "nope" not in lazy
    np.testing.assert_array_equal(lazy["spk2-utt1"], mats["spk2-utt1"])
    assert lazy["spk2-utt1"].flags.writeable  # torch.from_numpy warns on read-only arrays


def test_vectors_float64_and_dtype_policy(tmp_path):
    # A Kaldi table holds one type, taken from the first object on reading; the writer's type from the first write.
    stats = np.arange(12, dtype=np.float64).reshape(2, 6) * 1e7 + 0.125  # CMVN stats need double
    tables = {"dm": {"a": stats, "a2": np.ones((1, 6), np.float32)}, "dv": {"b": np.arange(5, dtype=np.float64)},
              "fv": {"c": np.ones(4, np.float32)}, "fm": {"d": np.ones((2, 3), np.float16),
                                                          "e": np.arange(6).reshape(2, 3)}}
    got = {}
    for name, items in tables.items():
        assert write_matrices(f"ark,scp:{tmp_path}/{name}.ark,{tmp_path}/{name}.scp", items) == len(items)
        got.update(read_matrices(f"scp:{tmp_path}/{name}.scp"))
        assert list(load_scp(tmp_path / f"{name}.scp").items())[0][1].dtype == got[next(iter(items))].dtype
        assert {k: v.dtype for k, v in read_matrices(f"ark:{tmp_path}/{name}.ark")} == {k: got[k].dtype for k in items}
    assert {k: (v.dtype, v.shape) for k, v in got.items()} == {
        "a": (np.float64, (2, 6)), "a2": (np.float64, (1, 6)), "b": (np.float64, (5,)), "c": (np.float32, (4,)),
        "d": (np.float32, (2, 3)), "e": (np.float32, (2, 3))}
    np.testing.assert_array_equal(got["a"], stats)
    assert kaldiio.load_scp(f"{tmp_path}/dm.scp")["a"].dtype == np.float64
    kaldi_reader = kni.RandomAccessDoubleMatrixReader(f"scp:{tmp_path}/dm.scp")  # its arrays die with it
    np.testing.assert_array_equal(np.array(kaldi_reader["a"]), stats)
    write_matrices(f"ark:{tmp_path}/y.ark", {"a": stats}, dtype=np.float32)
    assert dict(read_matrices(f"ark:{tmp_path}/y.ark"))["a"].dtype == np.float32
    assert dict(read_matrices(f"ark:{tmp_path}/dm.ark", dtype=np.float32))["a"].dtype == np.float32
    assert dict(read_matrices(f"ark:cat {tmp_path}/dm.ark |", dtype=np.float64))["a"].dtype == np.float64
    with pytest.raises(AsrktError, match=r"x\.ark, utterance 'v': cannot write a vector to an archive of matrix"):
        write_matrices(f"ark:{tmp_path}/x.ark", {"m": stats, "v": np.ones(3)})
    assert not (tmp_path / "x.ark").exists()


def test_torch_tensor_is_written(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 3, requires_grad=True)
    write_matrices(f"ark:{tmp_path}/t.ark", [("u", t * 2)])
    np.testing.assert_allclose(dict(read_matrices(f"ark:{tmp_path}/t.ark"))["u"], (t * 2).detach().numpy())


def test_text_ark_round_trip_and_kaldi_reads_it(tmp_path, mats):
    items = dict(mats, one=np.ones((2, 2), np.float32))
    write_matrices(f"ark,t,scp:{tmp_path}/t.ark,{tmp_path}/t.scp", items)
    text = (tmp_path / "t.ark").read_text()
    assert text.startswith("spk1-utt1  [\n")
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/t.ark")), items, rtol=1e-6)
    _assert_same(dict(read_matrices(f"scp:{tmp_path}/t.scp")), items, rtol=1e-6)  # offsets into a text ark
    vecs = {"vec": np.array([1.0, -2.5, 3.0], np.float32), "w": np.zeros(0, np.float32)}
    write_matrices(f"ark,t,scp:{tmp_path}/v.ark,{tmp_path}/v.scp", vecs)
    assert (tmp_path / "v.ark").read_text().startswith("vec  [ 1 -2.5 3 ]\n")
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/v.ark")), vecs)
    _assert_same(dict(read_matrices(f"scp:{tmp_path}/v.scp")), vecs)
    kaldi = {k: np.array(v) for k, v in kni.SequentialFloatMatrixReader(f"ark:{tmp_path}/t.ark") if k in mats}
    _assert_same(kaldi, mats, rtol=1e-6)


def test_reads_what_kaldi_writes_compressed_and_int_vectors(tmp_path, mats):
    with kni.CompressedMatrixWriter(f"ark:{tmp_path}/cm.ark") as w:
        for k, v in mats.items():
            w.write(k, v, kni.CompressionMethod.kSpeechFeature)
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/cm.ark")), mats, atol=0.05)
    with kni.Int32VectorWriter(f"ark,scp:{tmp_path}/ali.ark,{tmp_path}/ali.scp") as w:
        w.write("u1", [3, 1, 4, 1, 5])
        w.write("u2", [])
    got = dict(read_matrices(f"scp:{tmp_path}/ali.scp"))
    assert got["u1"].dtype == np.int32 and got["u1"].tolist() == [3, 1, 4, 1, 5] and got["u2"].size == 0
    with kni.Int32VectorWriter(f"ark,t:{tmp_path}/ali.txt") as w:
        w.write("u1", [3, 1, 4])
    assert dict(read_matrices(f"ark:{tmp_path}/ali.txt"))["u1"].tolist() == [3, 1, 4]


@pytest.mark.parametrize("method", [1, 2, 3, 5])
def test_compressed_round_trip(tmp_path, mats, method):
    mats = dict(mats, empty=np.zeros((0, 5), np.float32))
    write_matrices(f"ark,scp:{tmp_path}/c.ark,{tmp_path}/c.scp", mats, compression=method)
    mats["empty"] = np.zeros((0, 0), np.float32)  # Kaldi has no 0 x D matrix
    _assert_same(dict(read_matrices(f"scp:{tmp_path}/c.scp")), mats, atol=0.1)
    vec = {"v": np.arange(3, dtype=np.float32)}  # vectors are stored uncompressed
    write_matrices(f"ark:{tmp_path}/v.ark", vec, compression=method)
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/v.ark")), vec)
    _assert_same({k: np.array(v) for k, v in kni.SequentialFloatMatrixReader(f"scp:{tmp_path}/c.scp")},
                 dict(read_matrices(f"ark:{tmp_path}/c.ark")), atol=1e-6)


def test_scp_ranges(tmp_path, mats):
    write_matrices(f"ark,scp:{tmp_path}/a.ark,{tmp_path}/a.scp", mats)
    entry = (tmp_path / "a.scp").read_text().splitlines()[0].split()[1]
    (tmp_path / "r.scp").write_text(f"x {entry}[2:4]\ny {entry}[1:3,0:1]\n")
    got = load_scp(tmp_path / "r.scp")
    np.testing.assert_array_equal(got["x"], mats["spk1-utt1"][2:5])  # Kaldi ranges are inclusive
    np.testing.assert_array_equal(got["y"], mats["spk1-utt1"][1:4, 0:2])
    (tmp_path / "o.scp").write_text(f"z {entry}[5:7]\n")  # 7 rows: index 7 is past the end
    with pytest.raises(AsrktError, match=r"o\.scp:1, utterance 'z': range .* does not fit .* shape \(7, 5\)"):
        load_scp(tmp_path / "o.scp")["z"]


# ------------------------------------------------------------------------------------------------ pipes, stdio
def test_read_pipes(tmp_path, mats):
    write_matrices(f"ark,scp:{tmp_path}/a.ark,{tmp_path}/a.scp", mats)
    _assert_same(dict(read_matrices(f"ark:cat {tmp_path}/a.ark |")), mats)
    got = dict(read_matrices(f"scp:head -n 2 {tmp_path}/a.scp |"))
    assert list(got) == ["spk1-utt1", "spk1-utt2"]
    (tmp_path / "p.scp").write_text(f"u cat {tmp_path}/a.ark | tail -c +{len('spk1-utt1 ') + 1} |\n")
    np.testing.assert_array_equal(load_scp(tmp_path / "p.scp")["u"], mats["spk1-utt1"])
    # Stopping early kills the producer instead of waiting for it.
    it = read_matrices(f"ark:cat {tmp_path}/a.ark; sleep 30 |")
    assert next(it)[0] == "spk1-utt1"
    it.close()


def test_failing_read_pipe_is_an_error(tmp_path):
    with pytest.raises(AsrktError, match=r"'false \|'.*exit status 1"):
        list(read_matrices("ark:false |"))
    with pytest.raises(AsrktError, match="exit status 3"):
        list(read_matrices("ark:printf 'u1 ' ; exit 3 |"))


def test_write_pipe_and_stdio_cli(tmp_path, mats):
    write_matrices(f"ark:| cat > {tmp_path}/p.ark", mats)
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/p.ark")), mats)
    with pytest.raises(AsrktError, match="exit status 2"):
        write_matrices("ark:| cat > /dev/null; exit 2", mats)
    big = {f"u{i}": np.zeros((2000, 40), np.float32) for i in range(20)}  # more than a pipe buffer
    with pytest.raises(AsrktError, match=r"'\| exit 3': output command exited \(status 3\)"):
        write_matrices("ark:| exit 3", big)
    # stdin -> stdout through the CLI, as in a Kaldi pipeline.
    out = subprocess.run([PY, "-m", "asrkt.bin.copy_matrix", "ark:-", "ark,t:-"],
                         input=(tmp_path / "p.ark").read_bytes(), capture_output=True, check=True)
    (tmp_path / "back.txt").write_bytes(out.stdout)
    _assert_same(dict(read_matrices(f"ark:{tmp_path}/back.txt")), mats, rtol=1e-6)


def test_cli_into_head_stops_quietly(tmp_path):
    write_matrices(f"ark:{tmp_path}/a.ark", {f"u{i}": np.zeros((3, 2), np.float32) for i in range(20000)})
    res = subprocess.run(f"{PY} -m asrkt.bin.matrix_info ark:{tmp_path}/a.ark | head -n 1; "
                         "echo status ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                         capture_output=True, text=True)
    assert res.stdout == "u0 3 2\nstatus 141\n" and "Traceback" not in res.stderr


def test_dev_null_is_written_in_place(mats):
    write_matrices("ark:/dev/null", mats)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


# ------------------------------------------------------------------------------------------------ atomic writes
def test_exception_inside_writer_leaves_nothing(tmp_path, mats):
    with pytest.raises(RuntimeError, match="boom"):
        with MatrixWriter(f"ark,scp:{tmp_path}/o.ark,{tmp_path}/o.scp") as w:
            w.write("u1", mats["spk1-utt1"])
            raise RuntimeError("boom")
    assert _files(tmp_path) == []


def test_failed_write_keeps_previous_output(tmp_path, mats):
    spec = f"ark,scp:{tmp_path}/o.ark,{tmp_path}/o.scp"
    write_matrices(spec, mats)
    before = ((tmp_path / "o.ark").read_bytes(), (tmp_path / "o.scp").read_bytes())
    with pytest.raises(AsrktError, match="duplicate key"):
        write_matrices(spec, [("a", mats["spk1-utt1"]), ("a", mats["spk1-utt2"])])
    assert ((tmp_path / "o.ark").read_bytes(), (tmp_path / "o.scp").read_bytes()) == before
    assert _files(tmp_path) == ["o.ark", "o.scp"]


@pytest.mark.parametrize("key,array,fragment", [
    ("has space", np.zeros((2, 2), np.float32), "without whitespace"),
    ("", np.zeros((2, 2), np.float32), "without whitespace"),
    ("u", np.zeros((2, 2, 2), np.float32), "got shape (2, 2, 2)"),
])
def test_bad_keys_and_shapes(tmp_path, key, array, fragment):
    with pytest.raises(AsrktError) as e:
        write_matrices(f"ark:{tmp_path}/o.ark", [(key, array)])
    assert fragment in str(e.value) and "o.ark" in str(e.value)
    assert _files(tmp_path) == []


def test_unclosed_writer_is_not_finalised(tmp_path, mats):
    w = MatrixWriter(f"ark:{tmp_path}/o.ark")
    w.write("u", mats["spk1-utt1"])
    del w
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------------ bad input
def _write_ark(path, items):
    write_matrices(f"ark:{path}", items)
    return path.read_bytes()


@pytest.mark.parametrize("cut", [4, 9, 30])  # inside the data, the header, the type
@pytest.mark.parametrize("via", ["ark", "pipe"])
def test_truncated_ark_names_file_and_utterance(tmp_path, mats, cut, via):
    data = _write_ark(tmp_path / "a.ark", mats)
    first = len(b"spk1-utt1 ") + 15 + 7 * 5 * 4
    cuts = {4: len(data) - 4, 9: first + 10 + 9, 30: first + 10 + 3}
    (tmp_path / "t.ark").write_bytes(data[:cuts[cut]])
    spec = f"ark:{tmp_path}/t.ark" if via == "ark" else f"ark:cat {tmp_path}/t.ark |"
    with pytest.raises(AsrktError) as e:
        list(read_matrices(spec))
    msg = str(e.value)
    assert "t.ark" in msg and "truncated" in msg and "\n" not in msg
    assert "after utterance 'spk1-utt" in msg


def test_truncated_inside_the_last_key_reads_as_kaldi_does(tmp_path, mats):
    # Kaldi's (and kni's) archive reader takes end of file inside a key for the end of the archive.
    data = _write_ark(tmp_path / "a.ark", mats)
    (tmp_path / "t.ark").write_bytes(data[:len(b"spk1-utt1 ") + 15 + 7 * 5 * 4 + 4])
    assert [k for k, _ in read_matrices(f"ark:{tmp_path}/t.ark")] == ["spk1-utt1"]


def test_truncated_vector_is_not_silently_short(tmp_path, capfd):
    # kaldiio would return a 3-element vector here; we refuse, in one line, without kni's C++ chatter.
    data = _write_ark(tmp_path / "v.ark", {"u": np.arange(4, dtype=np.float32)})
    (tmp_path / "v.ark").write_bytes(data[:-4])
    with pytest.raises(AsrktError, match=r"v\.ark: error reading float32 vector objects before the first "
                                         r"utterance: Failed to read vector .* truncated"):
        list(read_matrices(f"ark:{tmp_path}/v.ark"))
    assert capfd.readouterr().err == ""


def test_corrupt_ark(tmp_path, mats):
    good = _write_ark(tmp_path / "a.ark", mats)
    data = bytearray(good)
    data[len(b"spk1-utt1 \0B"):len(b"spk1-utt1 \0BFM")] = b"XY"
    (tmp_path / "c.ark").write_bytes(bytes(data))
    with pytest.raises(AsrktError, match=r"c\.ark: error reading .* before the first utterance: .*Expected token "
                                         r"FM, got XY"):
        list(read_matrices(f"ark:{tmp_path}/c.ark"))
    data[len(b"spk1-utt1 \0B"):len(b"spk1-utt1 \0BFM")] = b"FM"
    second = len(b"spk1-utt1 ") + 15 + 7 * 5 * 4 + len(b"spk1-utt2 \0B")
    data[second:second + 2] = b"XY"
    (tmp_path / "c2.ark").write_bytes(bytes(data))
    with pytest.raises(AsrktError, match=r"c2\.ark: error reading float32 objects after utterance 'spk1-utt1': .*"
                                         r"Expected token FM, got XY.*\(truncated or corrupt archive\?\)$"):
        list(read_matrices(f"ark:{tmp_path}/c2.ark"))
    (tmp_path / "g.ark").write_bytes(b"u1 [ 1 2 x ]\n")
    with pytest.raises(AsrktError, match=r"g\.ark: error reading .*before the first utterance"):
        list(read_matrices(f"ark:{tmp_path}/g.ark"))
    (tmp_path / "r.ark").write_bytes(b"u1 [\n 1 2\n 3 ]\n")
    with pytest.raises(AsrktError, match=r"r\.ark: error reading .*before the first utterance"):
        list(read_matrices(f"ark:{tmp_path}/r.ark"))
    (tmp_path / "d.ark").write_bytes(good + good)
    with pytest.raises(AsrktError, match="duplicate key"):
        list(read_matrices(f"ark:{tmp_path}/d.ark"))


def test_permissive_read_stops_at_the_damage(tmp_path, mats):
    data = _write_ark(tmp_path / "a.ark", mats)
    (tmp_path / "t.ark").write_bytes(data[:-4])
    assert [k for k, _ in read_matrices(f"ark,p:{tmp_path}/t.ark")] == ["spk1-utt1", "spk1-utt2"]


def test_scp_errors_name_the_script_line(tmp_path, mats):
    write_matrices(f"ark,scp:{tmp_path}/a.ark,{tmp_path}/a.scp", mats)
    size = (tmp_path / "a.ark").stat().st_size
    (tmp_path / "bad.scp").write_text(f"u1 {tmp_path}/a.ark:{size + 10}\n")
    with pytest.raises(AsrktError, match=r"bad\.scp:1.*past the end"):
        load_scp(tmp_path / "bad.scp")["u1"]
    first = (tmp_path / "a.scp").read_text().split("\n")[0].split()[1]
    (tmp_path / "miss.scp").write_text(f"u1 {first}\nu2 {tmp_path}/gone.ark:3\n")
    with pytest.raises(AsrktError, match=r"gone\.ark: archive not found \(utterance 'u2', from .*miss\.scp:2\)"):
        list(read_matrices(f"scp:{tmp_path}/miss.scp"))
    assert [k for k, _ in read_matrices(f"scp,p:{tmp_path}/miss.scp")] == ["u1"]
    (tmp_path / "novalue.scp").write_text(f"u1 {tmp_path}/a.ark:3\nu2\n")
    with pytest.raises(AsrktError, match=r"novalue\.scp:2, utterance 'u2': missing value"):
        load_scp(tmp_path / "novalue.scp")
    (tmp_path / "dup.scp").write_text(f"u1 {tmp_path}/a.ark:3\nu1 {tmp_path}/a.ark:3\n")
    with pytest.raises(AsrktError, match=r"dup\.scp:2, utterance 'u1': duplicate key"):
        load_scp(tmp_path / "dup.scp")
    (tmp_path / "range.scp").write_text(f"u1 {tmp_path}/a.ark:3[a:b]\n")
    with pytest.raises(AsrktError, match=r"range\.scp:1: bad range"):
        load_scp(tmp_path / "range.scp")
    with pytest.raises(AsrktError, match="not found"):
        load_scp(tmp_path / "absent.scp")
    with pytest.raises(AsrktError, match=r"absent\.ark: archive not found"):
        list(read_matrices(f"ark:{tmp_path}/absent.ark"))


# ------------------------------------------------------------------------------------------------ CLI
def test_copy_matrix_and_matrix_info_cli(tmp_path, mats, capsys):
    write_matrices(f"ark:{tmp_path}/a.ark", mats)
    copy_matrix.main([f"ark:{tmp_path}/a.ark", f"ark,scp:{tmp_path}/b.ark,{tmp_path}/b.scp",
                      "--compression-method", "2"])
    _assert_same(dict(read_matrices(f"scp:{tmp_path}/b.scp")), mats, atol=0.05)
    copy_matrix.main(["--text", f"ark:{tmp_path}/a.ark", f"ark:{tmp_path}/a.txt"])
    assert (tmp_path / "a.txt").read_text().startswith("spk1-utt1  [")
    capsys.readouterr()
    matrix_info.main([f"scp:{tmp_path}/b.scp"])
    assert capsys.readouterr().out == "spk1-utt1 7 5\nspk1-utt2 3 5\nspk2-utt1 11 5\n"
    matrix_info.main(["--summary", f"ark:{tmp_path}/a.ark"])
    assert capsys.readouterr().out == "objects 3\nrows 21\ncols 5\ndtypes float32\n"
    with pytest.raises(SystemExit) as e:
        matrix_info.main([f"ark:{tmp_path}/nope.ark"])
    assert e.value.code == 1
    assert "ERROR: " in capsys.readouterr().err
