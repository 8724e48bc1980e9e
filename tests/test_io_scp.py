"""asrkt.io.scp: reading with file:line errors, merging shards, splitting into balanced pieces."""
from __future__ import annotations

import numpy as np
import pytest

from asrkt.bin import merge_scp as merge_scp_cli
from asrkt.io import load_scp, merge_scp, read_scp, split_scp, write_matrices
from asrkt.utils.errors import AsrktError


def _scp(path, keys):
    path.write_text("".join(f"{k} /x/{k}.ark:{i}\n" for i, k in enumerate(keys)))
    return path


def test_read_scp_checks(tmp_path):
    assert read_scp(_scp(tmp_path / "a.scp", ["a", "b"])) == {"a": "/x/a.ark:0", "b": "/x/b.ark:1"}
    _scp(tmp_path / "u.scp", ["b", "a"])
    with pytest.raises(AsrktError, match=r"u\.scp:2, utterance 'a': not C-sorted"):
        read_scp(tmp_path / "u.scp")
    assert list(read_scp(tmp_path / "u.scp", check_sorted=False)) == ["b", "a"]
    (tmp_path / "n.scp").write_text("a x.ark:1\nb\n")
    with pytest.raises(AsrktError, match=r"n\.scp:2, utterance 'b': missing value"):
        read_scp(tmp_path / "n.scp")


def test_merge_sorts_and_rejects_cross_shard_duplicates(tmp_path):
    s1 = _scp(tmp_path / "p.1.scp", ["spk2-u1", "spk1-u2"])
    s2 = _scp(tmp_path / "p.2.scp", ["spk1-u1", "B-upper"])
    out = tmp_path / "p.scp"
    assert merge_scp([s1, s2], out) == 4
    assert list(read_scp(out)) == ["B-upper", "spk1-u1", "spk1-u2", "spk2-u1"]  # C order: upper case first
    before = out.read_text()
    s3 = _scp(tmp_path / "p.3.scp", ["spk9", "spk1-u2"])
    with pytest.raises(AsrktError) as e:
        merge_scp([s1, s2, s3], out)
    assert "p.3.scp" in str(e.value) and "p.1.scp" in str(e.value) and "'spk1-u2'" in str(e.value)
    assert out.read_text() == before  # the failed merge did not touch the old output
    with pytest.raises(AsrktError, match="at least one input"):
        merge_scp([], out)
    with pytest.raises(AsrktError, match=r"missing\.scp: file not found"):
        merge_scp([s1, tmp_path / "missing.scp"], tmp_path / "new.scp")
    assert not (tmp_path / "new.scp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.1.scp", "p.2.scp", "p.3.scp", "p.scp"]


def test_split_is_contiguous_balanced_and_merges_back(tmp_path):
    keys = [f"utt{i:02d}" for i in range(10)]
    src = _scp(tmp_path / "all.scp", keys)
    outs = split_scp(src, [tmp_path / f"split4/{j}.scp" for j in range(1, 5)])
    pieces = [list(read_scp(o)) for o in outs]
    assert [len(p) for p in pieces] == [3, 3, 2, 2]
    assert sum(pieces, []) == keys
    merge_scp(outs, tmp_path / "back.scp")
    assert (tmp_path / "back.scp").read_text() == src.read_text()
    with pytest.raises(AsrktError, match="cannot split 10 entries into 11 pieces"):
        split_scp(src, [tmp_path / f"x{j}.scp" for j in range(11)])
    assert not any(tmp_path.glob("x*.scp"))
    with pytest.raises(AsrktError, match="distinct"):
        split_scp(src, [tmp_path / "y.scp", tmp_path / "y.scp"])


def test_merged_shards_load_matrices(tmp_path):
    rng = np.random.default_rng(1)
    data = {f"u{i}": rng.standard_normal((i + 1, 3)).astype(np.float32) for i in range(5)}
    for job, keys in ((1, ["u3", "u4"]), (2, ["u0", "u1", "u2"])):
        write_matrices(f"ark,scp:{tmp_path}/post.{job}.ark,{tmp_path}/post.{job}.scp", {k: data[k] for k in keys})
    merge_scp_cli.main([str(tmp_path / "post.scp"), str(tmp_path / "post.1.scp"), str(tmp_path / "post.2.scp")])
    table = load_scp(tmp_path / "post.scp")
    assert list(table) == sorted(data)
    for k, v in data.items():
        np.testing.assert_array_equal(table[k], v)


def test_merge_scp_cli_error(tmp_path, capsys):
    s = _scp(tmp_path / "a.scp", ["a"])
    with pytest.raises(SystemExit) as e:
        merge_scp_cli.main([str(tmp_path / "o.scp"), str(s), str(s)])
    assert e.value.code == 1
    assert "ERROR: " in capsys.readouterr().err and not (tmp_path / "o.scp").exists()
