"""asrkt.data.subset: subsets by count, speaker fraction, speaker or utterance list; splits for parallel jobs."""
import logging
import os

import pytest

from asrkt.bin import split_data_dir as split_cli
from asrkt.bin import subset_data_dir as subset_cli
from asrkt.data.kaldi_dir import read_table, write_table
from asrkt.data.subset import _contiguous_bounds, split_data_dir, subset_data_dir
from asrkt.data.validate import validate_data_dir
from asrkt.utils.errors import AsrktError
from conftest import make_data_dir


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory):
    """8 speakers x 3 utterances (24 short WAVs), with fake feats/cmvn tables and a feature record."""
    d = make_data_dir(tmp_path_factory.mktemp("big"), num_speakers=8, utts_per_speaker=3)
    utts = list(read_table(d / "utt2spk"))
    write_table(d / "feats.scp", {u: f"/x/feats.ark:{i}" for i, u in enumerate(utts)})
    write_table(d / "utt2num_frames", {u: str(40 + i) for i, u in enumerate(utts)})
    write_table(d / "cmvn.scp", {f"spk{s}": f"/x/cmvn.ark:{s}" for s in range(8)})
    (d / "feats_info.yaml").write_text("kind: fbank\ndim: 40\n")
    return d


def _utts(d):
    return list(read_table(d / "utt2spk"))


def _speakers(d):
    return set(read_table(d / "spk2utt"))


def test_first_and_last(big_dir, tmp_path):
    s = subset_data_dir(big_dir, tmp_path / "first", first=5)
    assert _utts(tmp_path / "first") == _utts(big_dir)[:5] and s.num_utts == 5 and s.num_speakers == 2
    subset_data_dir(big_dir, tmp_path / "last", last=4)
    assert _utts(tmp_path / "last") == _utts(big_dir)[-4:]
    with pytest.raises(AsrktError, match=r"cannot take 25 utterances: it has only 24"):
        subset_data_dir(big_dir, tmp_path / "x", first=25)


def test_every_table_filtered_and_metadata_copied(big_dir, tmp_path):
    dst = tmp_path / "sub"
    subset_data_dir(big_dir, dst, speakers=["spk3", "spk5"])
    keep = [u for u in _utts(big_dir) if u.startswith(("spk3-", "spk5-"))]
    for name in ("wav.scp", "text", "utt2spk", "feats.scp", "utt2num_frames"):
        src = read_table(big_dir / name)
        assert read_table(dst / name) == {u: src[u] for u in keep}, name
    assert read_table(dst / "cmvn.scp") == {"spk3": "/x/cmvn.ark:3", "spk5": "/x/cmvn.ark:5"}
    assert read_table(dst / "spk2utt") == {"spk3": "spk3-u0 spk3-u1 spk3-u2", "spk5": "spk5-u0 spk5-u1 spk5-u2"}
    assert (dst / "feats_info.yaml").read_text() == (big_dir / "feats_info.yaml").read_text()
    validate_data_dir(dst)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_fraction_takes_whole_speakers_deterministically(big_dir, tmp_path):
    def pick(frac, seed, name):
        subset_data_dir(big_dir, tmp_path / name, fraction=frac, seed=seed)
        return _speakers(tmp_path / name), _utts(tmp_path / name)

    spk25, utt25 = pick(0.25, 3, "a25")
    spk50, utt50 = pick(0.5, 3, "a50")
    spk100, _ = pick(1.0, 3, "a100")
    assert len(utt25) == 6 and len(spk25) == 2  # 2 speakers x 3 utts reach 25% of 24
    assert len(utt50) == 12 and len(spk50) == 4
    assert spk25 < spk50 < spk100 == _speakers(big_dir)  # nested: fewer voices, not fewer utts per voice
    # whole speakers: every utterance of a chosen speaker is kept
    assert utt25 == [u for u in _utts(big_dir) if u.split("-")[0] in spk25]
    assert pick(0.25, 3, "b25") == (spk25, utt25)  # same seed, same subset
    others = {frozenset(pick(0.25, s, f"s{s}")[0]) for s in range(6)}
    assert len(others) > 1  # the seed matters
    # Rounding up: 30% of 24 utterances = 7.2 -> 3 speakers (9 utterances).
    assert len(pick(0.3, 0, "a30")[1]) == 9


def test_complementary_speaker_lists_are_disjoint(big_dir, tmp_path):
    spk_list = tmp_path / "spk.list"
    spk_list.write_text("spk0\nspk2\nspk2\n\nspk7 extra-field-ignored\n")
    subset_data_dir(big_dir, tmp_path / "a", speakers=spk_list)
    subset_data_dir(big_dir, tmp_path / "b", speakers=[f"spk{i}" for i in (1, 3, 4, 5, 6)])
    assert _speakers(tmp_path / "a") == {"spk0", "spk2", "spk7"}
    assert not _speakers(tmp_path / "a") & _speakers(tmp_path / "b")
    assert sorted(_utts(tmp_path / "a") + _utts(tmp_path / "b")) == _utts(big_dir)


def test_unknown_ids_are_errors(big_dir, tmp_path):
    spk_list = tmp_path / "spk.list"
    spk_list.write_text("spk0\nspk42\n")
    with pytest.raises(AsrktError, match=rf"^{spk_list}:2: speaker 'spk42' is not in {big_dir}/spk2utt$"):
        subset_data_dir(big_dir, tmp_path / "a", speakers=spk_list)
    with pytest.raises(AsrktError, match=rf"^utterance list: utterance 'x-1' is not in {big_dir}/utt2spk "
                                         r"\(and 1 more unknown ids\)$"):
        subset_data_dir(big_dir, tmp_path / "a", utts=["spk0-u0", "x-1", "x-2"])
    assert not (tmp_path / "a").exists()


def test_utterance_list(big_dir, tmp_path):
    lst = tmp_path / "utts"
    lst.write_text("spk4-u1\nspk0-u2\n")
    subset_data_dir(big_dir, tmp_path / "u", utts=lst)
    assert _utts(tmp_path / "u") == ["spk0-u2", "spk4-u1"]
    assert read_table(tmp_path / "u" / "cmvn.scp") == {"spk0": "/x/cmvn.ark:0", "spk4": "/x/cmvn.ark:4"}


def test_bad_selectors(big_dir, tmp_path):
    with pytest.raises(AsrktError, match=r"give exactly one of .*\(got \['first', 'fraction'\]\)"):
        subset_data_dir(big_dir, tmp_path / "a", first=2, fraction=0.5)
    with pytest.raises(AsrktError, match=r"fraction must be in \(0, 1\], got 1.5"):
        subset_data_dir(big_dir, tmp_path / "a", fraction=1.5)
    with pytest.raises(AsrktError, match="must go to a new directory"):
        subset_data_dir(big_dir, big_dir.parent, first=2)


def test_replaces_existing_subset_but_not_other_folders(big_dir, tmp_path):
    dst = tmp_path / "sub"
    subset_data_dir(big_dir, dst, first=10)
    (dst / "split2").mkdir()  # stale content of the old subset goes with it
    subset_data_dir(big_dir, dst, first=3)
    assert len(_utts(dst)) == 3 and not (dst / "split2").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(AsrktError, match=rf"{other}: exists and is not a Kaldi data directory"):
        subset_data_dir(big_dir, other, first=3)
    assert (other / "notes.txt").read_text() == "keep me"


def test_invalid_source_is_refused(tiny_data_dir, tmp_path):
    (tiny_data_dir / "spk2utt").write_text("spk0 spk0-u0\n")
    with pytest.raises(AsrktError, match=r"spk2utt:1: speaker 'spk0' does not list its utterance 'spk0-u1'"):
        subset_data_dir(tiny_data_dir, tmp_path / "a", first=2)


def test_subset_cli(big_dir, tmp_path, capsys):
    assert subset_cli.main(["--fraction", "0.25", "--seed", "3", str(big_dir), str(tmp_path / "a")]) is None
    assert "6 utterances, 2 speakers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        subset_cli.main(["--first", "99", str(big_dir), str(tmp_path / "b")])
    assert e.value.code == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"ERROR: {big_dir}: cannot take 99 utterances: it has only 24"


# ---------------------------------------------------------------------------------------------------------
# split_data_dir


def test_contiguous_bounds_balance():
    assert _contiguous_bounds([3] * 8, 4) == [0, 2, 4, 6, 8]
    assert _contiguous_bounds([10, 1, 1, 1, 1, 10], 2) == [0, 3, 6]
    b = _contiguous_bounds([1, 1, 1, 50], 4)  # every job gets at least one item
    assert b == [0, 1, 2, 3, 4]


def test_split_by_speaker_covers_everything_once(tmp_path):
    src = make_data_dir(tmp_path, num_speakers=5, utts_per_speaker=2)
    dirs = split_data_dir(src, 3)
    assert dirs == [src / "split3" / str(j) for j in (1, 2, 3)]
    all_utts = [u for d in dirs for u in _utts(d)]
    assert sorted(all_utts) == _utts(src) and len(set(all_utts)) == len(all_utts)
    spk_sets = [_speakers(d) for d in dirs]
    assert sum(len(s) for s in spk_sets) == 5  # speaker-disjoint
    assert [len(_utts(d)) for d in dirs] == [4, 2, 4]
    for d in dirs:
        validate_data_dir(d)


def test_split_falls_back_to_utterances(tiny_data_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dirs = split_data_dir(tiny_data_dir, 4)
    assert "has 2 speakers, fewer than 4 jobs: splitting by utterance" in caplog.text
    assert [_utts(d) for d in dirs] == [["spk0-u0"], ["spk0-u1", "spk0-u2"], ["spk1-u0"], ["spk1-u1", "spk1-u2"]]
    with pytest.raises(AsrktError, match=r"cannot split 6 utterances into 7 jobs"):
        split_data_dir(tiny_data_dir, 7)


def test_split_reused_when_fresh_rebuilt_when_stale(tiny_data_dir, caplog):
    dirs = split_data_dir(tiny_data_dir, 2)
    stamp = (dirs[0] / "utt2spk").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert split_data_dir(tiny_data_dir, 2) == dirs
    assert "reusing it" in caplog.text
    assert (dirs[0] / "utt2spk").stat().st_mtime_ns == stamp
    # The data dir changes after the split: the split is redone.
    t = read_table(tiny_data_dir / "text")
    t["spk0-u0"] = "CHANGED"
    write_table(tiny_data_dir / "text", t)
    future = stamp + 10**9
    os.utime(tiny_data_dir / "text", ns=(future, future))
    split_data_dir(tiny_data_dir, 2)
    assert read_table(dirs[0] / "text")["spk0-u0"] == "CHANGED"
    # A table set aside (as make_fbank.sh does with an old feats.scp) makes the split stale too.
    write_table(tiny_data_dir / "utt2dur", {u: "1.0" for u in read_table(tiny_data_dir / "utt2spk")})
    split_data_dir(tiny_data_dir, 2)
    assert (dirs[1] / "utt2dur").is_file()
    os.replace(tiny_data_dir / "utt2dur", tiny_data_dir.parent / "utt2dur")
    split_data_dir(tiny_data_dir, 2)
    assert not (dirs[1] / "utt2dur").exists()


def test_split_cli(tiny_data_dir, capsys):
    assert split_cli.main([str(tiny_data_dir), "2"]) is None
    assert capsys.readouterr().out.split() == [str(tiny_data_dir / "split2" / j) for j in ("1", "2")]
    with pytest.raises(SystemExit) as e:
        split_cli.main([str(tiny_data_dir), "0"])
    assert e.value.code == 1
    assert "number of jobs must be a positive integer, got 0" in capsys.readouterr().err
