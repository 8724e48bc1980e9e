"""asrkt.data.validate: each broken data dir fails with a message naming the file, line and utterance;
fix_data_dir repairs what can be repaired and backs up the old files."""
import logging
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from asrkt.bin import fix_data_dir as fix_cli
from asrkt.bin import validate_data_dir as validate_cli
from asrkt.data.kaldi_dir import read_table, write_table
from asrkt.data.validate import DataDirError, fix_data_dir, validate_data_dir
from asrkt.utils.errors import AsrktError

# tiny_data_dir: speakers spk0, spk1; utterances spk{0,1}-u{0,1,2}; lines 1-6 in that order.


def _lines(path):
    return path.read_text().splitlines()


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def _error(d, **kw) -> DataDirError:
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, **kw)
    return e.value


def test_valid_dir_passes_with_summary(tiny_data_dir):
    s = validate_data_dir(tiny_data_dir, check_audio=True)
    assert (s.num_utts, s.num_speakers, s.num_recordings) == (6, 2, 6)
    assert s.warnings == []
    assert validate_cli.main([str(tiny_data_dir)]) is None


def test_unsorted_ids(tiny_data_dir):
    lines = _lines(tiny_data_dir / "text")
    lines[0], lines[1] = lines[1], lines[0]
    _write_lines(tiny_data_dir / "text", lines)
    e = _error(tiny_data_dir)
    assert str(e).startswith(f"{tiny_data_dir}/text:2, utterance 'spk0-u0': not C-sorted: "
                             "'spk0-u0' comes after 'spk0-u1'")
    assert "fix_data_dir" in str(e)  # fixable: the hint is given


def test_duplicate_ids(tiny_data_dir):
    lines = _lines(tiny_data_dir / "utt2spk")
    _write_lines(tiny_data_dir / "utt2spk", lines[:3] + [lines[2]] + lines[3:])
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/utt2spk:4, utterance 'spk0-u2': duplicate key"]


def test_utterance_in_text_but_not_in_wav_scp(tiny_data_dir):
    lines = _lines(tiny_data_dir / "wav.scp")
    _write_lines(tiny_data_dir / "wav.scp", lines[:2] + lines[3:])
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/text:3: utterance 'spk0-u2' is not in wav.scp"]
    assert str(e).splitlines()[0] == e.problems[0]


def test_utterance_only_in_wav_scp(tiny_data_dir):
    table = read_table(tiny_data_dir / "wav.scp")
    table["spk1-u9"] = table["spk1-u0"]
    write_table(tiny_data_dir / "wav.scp", table)
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/wav.scp:7: utterance 'spk1-u9' is not in utt2spk, text"]


def test_non_utf8_text(tiny_data_dir):
    data = (tiny_data_dir / "text").read_bytes().splitlines(keepends=True)
    data[1] = b"spk0-u1 caf\xe9\n"  # Latin-1
    (tiny_data_dir / "text").write_bytes(b"".join(data))
    e = _error(tiny_data_dir)
    assert e.problems[0].startswith(f"{tiny_data_dir}/text:2: not valid UTF-8")
    assert "fix_data_dir" not in str(e)  # no fix can guess an encoding


def test_spk2utt_inconsistent(tiny_data_dir):
    _write_lines(tiny_data_dir / "spk2utt", ["spk0 spk0-u0 spk0-u1 spk1-u0",
                                             "spk1 spk1-u1 spk1-u2"])
    e = _error(tiny_data_dir)
    sp, u2s = f"{tiny_data_dir}/spk2utt", f"{tiny_data_dir}/utt2spk"
    assert e.problems == [
        f"{sp}:1: speaker 'spk0' lists utterance 'spk1-u0' which utt2spk ({u2s}:4) assigns to speaker 'spk1'",
        f"{sp}:1: speaker 'spk0' does not list its utterance 'spk0-u2' ({u2s}:3)",
        f"{sp}:2: speaker 'spk1' does not list its utterance 'spk1-u0' ({u2s}:4)",
    ]
    assert str(e).startswith(f"{tiny_data_dir}: invalid data directory, 3 problems:\n  {sp}:1: ")


def test_missing_files(tiny_data_dir):
    (tiny_data_dir / "text").unlink()
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/text: missing (required) (use --no-text if by design)"]
    assert validate_data_dir(tiny_data_dir, no_text=True).num_utts == 6
    (tiny_data_dir / "utt2spk").unlink()
    e = _error(tiny_data_dir, no_text=True)
    assert e.problems == [f"{tiny_data_dir}/utt2spk: missing (required)"]


def test_missing_wav_scp_allowed_with_no_wav(tiny_data_dir):
    (tiny_data_dir / "wav.scp").unlink()
    assert _error(tiny_data_dir).problems == [
        f"{tiny_data_dir}/wav.scp: missing (required) (use --no-wav if by design)"]
    assert validate_data_dir(tiny_data_dir, no_wav=True).num_utts == 6


def _rename_utts(d, mapping):
    for name in ("wav.scp", "text", "utt2spk"):
        t = read_table(d / name)
        write_table(d / name, {mapping.get(k, k): v for k, v in t.items()})


def test_non_speaker_prefixed_ids(tiny_data_dir):
    _rename_utts(tiny_data_dir, {"spk1-u2": "x-u2"})
    spk2utt = _lines(tiny_data_dir / "spk2utt")
    _write_lines(tiny_data_dir / "spk2utt", [spk2utt[0], "spk1 spk1-u0 spk1-u1 x-u2"])
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/utt2spk:6: utterance 'x-u2' does not start with its speaker id "
                          "'spk1' (Kaldi needs speaker-prefixed utterance ids, e.g. 'spk1-x-u2')"]


def test_speaker_id_prefix_of_another_breaks_sort_order(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write_lines(d / "utt2spk", ["a-b-1 a-b", "a-c a"])
    _write_lines(d / "spk2utt", ["a a-c", "a-b a-b-1"])
    e = _error(d, no_text=True, no_wav=True)
    assert e.problems[0].startswith(f"{d}/utt2spk:1: utterance 'a-b-1' (speaker 'a-b') is out of order "
                                    "when utt2spk is sorted by speaker")


def test_problems_collected_and_capped(tiny_data_dir):
    (tiny_data_dir / "wav.scp").write_text("")
    e = _error(tiny_data_dir)
    lines = str(e).splitlines()
    # An empty wav.scp is read as an empty table: every utterance is reported, the first 10 shown.
    assert len(e.problems) == 6 and lines[0].endswith("6 problems:")
    many = tiny_data_dir.parent / "many"
    many.mkdir()
    _write_lines(many / "utt2spk", [f"s{i:02d}-u s{i:02d}" for i in range(14)])
    _write_lines(many / "spk2utt", [f"s{i:02d} s{i:02d}-u" for i in range(14)])
    _write_lines(many / "text", [])
    e = _error(many, no_wav=True)
    assert len(e.problems) == 14
    lines = str(e).splitlines()
    assert len(lines) == 1 + 10 + 1 + 1 and lines[11] == "  ... and 4 more"
    assert lines[1] == f"  {many}/utt2spk:1: utterance 's00-u' is not in text"


def test_empty_transcript_is_a_warning(tiny_data_dir, caplog):
    t = read_table(tiny_data_dir / "text")
    t["spk1-u1"] = ""
    write_table(tiny_data_dir / "text", t)
    with caplog.at_level(logging.WARNING):
        s = validate_data_dir(tiny_data_dir)
    assert s.warnings == [f"{tiny_data_dir}/text:5: utterance 'spk1-u1' has an empty transcript"]
    assert "empty transcript" in caplog.text


def _add_feats(d, drop_utt=None, drop_spk=None):
    utts = list(read_table(d / "utt2spk"))
    write_table(d / "feats.scp", {u: f"feats.ark:{10 * i}" for i, u in enumerate(utts) if u != drop_utt})
    write_table(d / "utt2num_frames", {u: str(50 + i) for i, u in enumerate(utts)})
    write_table(d / "cmvn.scp", {s: f"cmvn.ark:{i}" for i, s in enumerate(["spk0", "spk1"]) if s != drop_spk})


def test_feats_consistency(tiny_data_dir):
    _add_feats(tiny_data_dir)
    validate_data_dir(tiny_data_dir)
    _add_feats(tiny_data_dir, drop_utt="spk1-u2", drop_spk="spk0")
    e = _error(tiny_data_dir)
    assert e.problems == [
        f"{tiny_data_dir}/text:6: utterance 'spk1-u2' is not in feats.scp",
        f"{tiny_data_dir}/utt2spk:1: speaker 'spk0' has no entry in cmvn.scp (cmvn.scp is per speaker; "
        "recompute it)",
    ]
    validate_data_dir(tiny_data_dir, no_feats=True)


def test_bad_utt2num_frames_value(tiny_data_dir):
    _add_feats(tiny_data_dir)
    t = read_table(tiny_data_dir / "utt2num_frames")
    t["spk0-u1"] = "0"
    write_table(tiny_data_dir / "utt2num_frames", t)
    assert _error(tiny_data_dir).problems == [
        f"{tiny_data_dir}/utt2num_frames:2: utterance 'spk0-u1': value must be a positive integer, got '0'"]


def test_segments_recording_not_in_wav_scp(tiny_data_dir):
    wav = read_table(tiny_data_dir / "wav.scp")
    write_table(tiny_data_dir / "wav.scp", {"rec0": wav["spk0-u0"]})
    utts = list(read_table(tiny_data_dir / "utt2spk"))
    write_table(tiny_data_dir / "segments", {u: f"{'rec0' if u != 'spk1-u0' else 'rec9'} 0.0 0.4" for u in utts})
    e = _error(tiny_data_dir)
    assert e.problems == [f"{tiny_data_dir}/segments:4: utterance 'spk1-u0': recording 'rec9' is not in wav.scp"]


def test_check_audio_segment_past_the_end(tiny_data_dir):
    wav = read_table(tiny_data_dir / "wav.scp")
    write_table(tiny_data_dir / "wav.scp", {"rec0": wav["spk0-u0"]})  # 0.5 s
    utts = list(read_table(tiny_data_dir / "utt2spk"))
    write_table(tiny_data_dir / "segments", {u: "rec0 0.0 0.4" if u != "spk0-u2" else "rec0 0.1 0.9"
                                             for u in utts})
    validate_data_dir(tiny_data_dir)  # times are only checked against the audio with check_audio
    e = _error(tiny_data_dir, check_audio=True)
    assert e.problems == [f"{tiny_data_dir}/segments:3: utterance 'spk0-u2' ends at 0.9 s but recording 'rec0' "
                          "lasts 0.500 s"]


def test_check_audio_unreadable_and_empty(tiny_data_dir):
    wav = read_table(tiny_data_dir / "wav.scp")
    empty = tiny_data_dir.parent / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    wav["spk0-u1"] = str(empty)
    wav["spk1-u0"] = str(tiny_data_dir.parent / "nope.wav")
    write_table(tiny_data_dir / "wav.scp", wav)
    validate_data_dir(tiny_data_dir)
    e = _error(tiny_data_dir, check_audio=True)
    assert len(e.problems) == 2
    assert e.problems[0] == (f"{tiny_data_dir}/wav.scp:2, utterance 'spk0-u1': audio '{empty}' is empty "
                             "(zero samples)")
    assert e.problems[1].startswith(f"{tiny_data_dir}/wav.scp:4, utterance 'spk1-u0': cannot read audio")


def test_cli_exit_status_and_message(tiny_data_dir, capsys):
    lines = _lines(tiny_data_dir / "wav.scp")
    _write_lines(tiny_data_dir / "wav.scp", lines[:2] + lines[3:])
    with pytest.raises(SystemExit) as e:
        validate_cli.main([str(tiny_data_dir)])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith(f"ERROR: {tiny_data_dir}/text:3: utterance 'spk0-u2' is not in "
                                              "wav.scp")
    assert validate_cli.main(["--no-wav", str(tiny_data_dir)]) is None


def test_cli_as_module(tiny_data_dir, repo_root):
    (tiny_data_dir / "spk2utt").unlink()
    r = subprocess.run([sys.executable, "-m", "asrkt.bin.validate_data_dir", str(tiny_data_dir)], cwd=repo_root,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert f"ERROR: {tiny_data_dir}/spk2utt: missing (required)" in r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------------------
# fix_data_dir


def _break(d):
    """Unsorted text, a duplicate utt2spk line, spk0-u2 missing from wav.scp, wrong spk2utt."""
    text = _lines(d / "text")
    _write_lines(d / "text", text[::-1])
    u2s = _lines(d / "utt2spk")
    _write_lines(d / "utt2spk", u2s[:1] + u2s[:1] + u2s[1:])
    wav = _lines(d / "wav.scp")
    _write_lines(d / "wav.scp", wav[:2] + wav[3:])
    _write_lines(d / "spk2utt", ["spk0 spk0-u0"])


def test_fix_repairs_and_backs_up(tiny_data_dir, caplog):
    _break(tiny_data_dir)
    before = {n: (tiny_data_dir / n).read_bytes() for n in ("text", "utt2spk", "wav.scp", "spk2utt")}
    with pytest.raises(DataDirError):
        validate_data_dir(tiny_data_dir)
    with caplog.at_level(logging.WARNING):
        report = fix_data_dir(tiny_data_dir)
    assert report.dropped == {"not in wav.scp": ["spk0-u2"]}
    assert "dropping 1 utterance(s) not in wav.scp: spk0-u2" in caplog.text
    assert "duplicate key 'spk0-u0'" in caplog.text
    s = validate_data_dir(tiny_data_dir)
    assert (s.num_utts, s.num_speakers) == (5, 2)
    assert list(read_table(tiny_data_dir / "text")) == ["spk0-u0", "spk0-u1", "spk1-u0", "spk1-u1", "spk1-u2"]
    assert read_table(tiny_data_dir / "spk2utt") == {"spk0": "spk0-u0 spk0-u1", "spk1": "spk1-u0 spk1-u1 spk1-u2"}
    assert sorted(report.changed) == ["spk2utt", "text", "utt2spk"]  # wav.scp was already right
    for name in report.changed:
        assert (tiny_data_dir / ".backup" / name).read_bytes() == before[name]
    assert not (tiny_data_dir / ".backup" / "wav.scp").exists()
    assert not [p for p in tiny_data_dir.iterdir() if ".tmp" in p.name or p.name.endswith(".fix")]
    # Idempotent: a second run changes nothing.
    again = fix_data_dir(tiny_data_dir)
    assert again.changed == [] and again.dropped == {}


def test_fix_keeps_older_backups(tiny_data_dir):
    original = (tiny_data_dir / "text").read_bytes()
    _write_lines(tiny_data_dir / "text", _lines(tiny_data_dir / "text")[::-1])
    fix_data_dir(tiny_data_dir)
    first_broken = (tiny_data_dir / "text").read_bytes()
    assert first_broken == original
    _write_lines(tiny_data_dir / "text", _lines(tiny_data_dir / "text")[:1] + _lines(tiny_data_dir / "text"))
    fix_data_dir(tiny_data_dir)
    assert (tiny_data_dir / ".backup" / "text").read_text().splitlines()[0].startswith("spk1-u2")
    assert (tiny_data_dir / ".backup" / "text.1").read_text().splitlines()[:2] == \
        _lines(tiny_data_dir / "text")[:1] * 2


def test_fix_filters_feats_and_cmvn(tiny_data_dir):
    _add_feats(tiny_data_dir, drop_utt="spk1-u2", drop_spk="spk0")
    report = fix_data_dir(tiny_data_dir)
    assert report.dropped == {"not in feats.scp": ["spk1-u2"],
                              "whose speaker is not in cmvn.scp": ["spk0-u0", "spk0-u1", "spk0-u2"]}
    s = validate_data_dir(tiny_data_dir)
    assert (s.num_utts, s.num_speakers) == (2, 1)
    assert list(read_table(tiny_data_dir / "utt2num_frames")) == ["spk1-u0", "spk1-u1"]


def test_fix_cannot_repair_non_prefixed_ids(tiny_data_dir):
    _rename_utts(tiny_data_dir, {"spk1-u2": "x-u2"})
    with pytest.raises(DataDirError, match=r"fix_data_dir cannot repair these problems") as e:
        fix_data_dir(tiny_data_dir)
    assert "utterance 'x-u2' does not start with its speaker id 'spk1'" in str(e.value)


def test_fix_refuses_non_utf8_and_changes_nothing(tiny_data_dir):
    (tiny_data_dir / "text").write_bytes(b"spk0-u1 caf\xe9\nspk0-u0 a\n")
    before = {p.name: p.read_bytes() for p in tiny_data_dir.iterdir()}
    with pytest.raises(AsrktError, match=r"text:1: not valid UTF-8"):
        fix_data_dir(tiny_data_dir)
    assert {p.name: p.read_bytes() for p in tiny_data_dir.iterdir()} == before


def test_fix_refuses_to_drop_everything(tiny_data_dir):
    _write_lines(tiny_data_dir / "text", ["other-u1 a"])
    with pytest.raises(AsrktError, match="no utterance is left"):
        fix_data_dir(tiny_data_dir)
    assert _lines(tiny_data_dir / "text") == ["other-u1 a"]


def test_fix_cli(tiny_data_dir, capsys):
    _break(tiny_data_dir)
    assert fix_cli.main([str(tiny_data_dir)]) is None
    out = capsys.readouterr().out
    assert "5 utterances kept, 1 dropped" in out and ".backup" in out
    with pytest.raises(SystemExit) as e:
        fix_cli.main([str(tiny_data_dir / "nope")])
    assert e.value.code == 1
    assert "nope: utt2spk: missing" in capsys.readouterr().err


def _set(d, name, key, value):
    t = read_table(d / name) if (d / name).is_file() else {}
    t[key] = value
    write_table(d / name, t)


def _segments(d, value_for_u1):
    wav = read_table(d / "wav.scp")
    write_table(d / "wav.scp", {"rec0": wav["spk0-u0"]})
    write_table(d / "segments", {u: "rec0 0 0.4" if u != "spk0-u1" else value_for_u1
                                 for u in read_table(d / "utt2spk")})


# (how to break the dir, the one problem expected, relative to the dir)
SMALL_CASES = {
    "two speakers": (lambda d: _set(d, "utt2spk", "spk0-u1", "spk0 spk1"),
                     "utt2spk:2: utterance 'spk0-u1' must map to exactly one speaker id, got 'spk0 spk1'"),
    "spk2utt unknown speaker": (lambda d: _set(d, "spk2utt", "spk9", "spk9-u0"),
                                "spk2utt:3: speaker 'spk9' is not in utt2spk"),
    "spk2utt lists twice": (lambda d: _set(d, "spk2utt", "spk0", "spk0-u0 spk0-u1 spk0-u1 spk0-u2"),
                            "spk2utt:1: speaker 'spk0' lists utterance 'spk0-u1' twice"),
    "spk2utt unknown utt": (lambda d: _set(d, "spk2utt", "spk0", "spk0-u0 spk0-u1 spk0-u2 spk0-u7"),
                            "spk2utt:1: speaker 'spk0' lists utterance 'spk0-u7' which is not in utt2spk"),
    "spk2utt unsorted": (lambda d: _set(d, "spk2utt", "spk0", "spk0-u1 spk0-u0 spk0-u2"),
                         "spk2utt:1: speaker 'spk0': utterances are not C-sorted"),
    "speaker not in spk2utt": (lambda d: write_table(d / "spk2utt", {"spk0": "spk0-u0 spk0-u1 spk0-u2"}),
                               "utt2spk:4: speaker 'spk1' (utterance 'spk1-u0') is not in spk2utt"),
    "empty wav entry": (lambda d: _set(d, "wav.scp", "spk1-u1", ""),
                        "wav.scp:5: recording 'spk1-u1' has no file name or command"),
    "bad utt2dur": (lambda d: write_table(d / "utt2dur", {u: "x" if u == "spk0-u2" else "1.0"
                                                          for u in read_table(d / "utt2spk")}),
                    "utt2dur:3: utterance 'spk0-u2': value must be a positive number, got 'x'"),
    "cmvn unknown speaker": (lambda d: write_table(d / "cmvn.scp", {"spk0": "a:1", "spk1": "a:2", "spk7": "a:3"}),
                             "cmvn.scp:3: speaker 'spk7' is not in utt2spk"),
    "empty feats entry": (lambda d: write_table(d / "feats.scp", {u: "" if u == "spk1-u0" else "a.ark:1"
                                                                  for u in read_table(d / "utt2spk")}),
                          "feats.scp:4: utterance 'spk1-u0' has no rxfilename"),
    "segments fields": (lambda d: _segments(d, "rec0 0.1"),
                        "segments:2: utterance 'spk0-u1': expected '<recording> <start> <end>', got 'rec0 0.1'"),
    "segments numbers": (lambda d: _segments(d, "rec0 a 0.3"),
                         "segments:2: utterance 'spk0-u1': start and end must be numbers, got 'rec0 a 0.3'"),
    "segments times": (lambda d: _segments(d, "rec0 0.3 0.2"),
                       "segments:2: utterance 'spk0-u1': bad segment times 0.3 to 0.2"),
    "empty line": (lambda d: (d / "text").write_text((d / "text").read_text() + "\n"),
                   "text:7: empty line"),
}


@pytest.mark.parametrize("case", sorted(SMALL_CASES))
def test_each_problem_has_its_message(tiny_data_dir, case):
    breaker, expected = SMALL_CASES[case]
    breaker(tiny_data_dir)
    assert _error(tiny_data_dir).problems == [f"{tiny_data_dir}/{expected}"]
