"""asrkt.data.lhotse_bridge: Kaldi dir <-> lhotse manifests through lhotse's own kaldi functions."""
import numpy as np
import pytest
import soundfile

pytest.importorskip("lhotse")
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402

from asrkt.bin import lhotse_bridge as bridge_cli  # noqa: E402
from asrkt.data.kaldi_dir import read_table, write_table  # noqa: E402
from asrkt.data.lhotse_bridge import (kaldi_dir_to_lhotse, lhotse_to_kaldi_dir, read_manifests,  # noqa: E402
                                      write_manifests)
from asrkt.data.validate import validate_data_dir  # noqa: E402
from asrkt.utils.errors import AsrktError  # noqa: E402


def test_round_trip_keeps_ids_texts_speakers(tiny_data_dir, tmp_path):
    recs, sups = kaldi_dir_to_lhotse(tiny_data_dir)
    assert len(recs) == 6 and recs[0].sampling_rate == 16000
    assert abs(recs["spk0-u1"].duration - 0.75) < 1e-3
    paths = write_manifests(recs, sups, tmp_path / "manifests", "tiny")
    assert [p.name for p in paths] == ["tiny_recordings.jsonl.gz", "tiny_supervisions.jsonl.gz"]
    recs2, sups2 = read_manifests(*paths)
    out = tmp_path / "back"
    summary = lhotse_to_kaldi_dir(recs2, sups2, out)
    assert (summary.num_utts, summary.num_speakers) == (6, 2)
    for name in ("text", "utt2spk", "spk2utt", "wav.scp"):
        assert read_table(out / name) == read_table(tiny_data_dir / name), name
    # one whole-recording supervision each: plain layout, no segments
    assert not (out / "segments").exists()
    assert read_table(out / "utt2dur")["spk0-u1"] == "0.75"
    validate_data_dir(out, check_audio=True)


def _manifests(tmp_path, speaker_of, text_of=lambda i: f"WORD{i}", two_per_recording=False):
    recs, sups = [], []
    for i in range(3):
        path = tmp_path / f"r{i}.wav"
        soundfile.write(path, np.full(8000, 0.1, dtype=np.float32), 16000)
        rec = Recording.from_file(path, recording_id=f"rec{i}")
        recs.append(rec)
        parts = [(0.0, 0.25), (0.25, 0.25)] if two_per_recording else [(0.0, rec.duration)]
        for k, (start, dur) in enumerate(parts):
            sups.append(SupervisionSegment(id=f"utt{i}{k}", recording_id=rec.id, start=start, duration=dur,
                                           speaker=speaker_of(i), text=text_of(i)))
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)


def test_export_prefixes_speaker_and_keeps_segments(tmp_path):
    recs, sups = _manifests(tmp_path, speaker_of=lambda i: f"S{i % 2}", two_per_recording=True)
    out = tmp_path / "kaldi"
    lhotse_to_kaldi_dir(recs, sups, out)
    assert read_table(out / "utt2spk") == {"S0-utt00": "S0", "S0-utt01": "S0", "S0-utt20": "S0", "S0-utt21": "S0",
                                           "S1-utt10": "S1", "S1-utt11": "S1"}
    assert read_table(out / "segments")["S0-utt01"] == "rec0 0.25 0.5"
    assert list(read_table(out / "wav.scp")) == ["rec0", "rec1", "rec2"]
    assert read_table(out / "text")["S1-utt11"] == "WORD1"
    validate_data_dir(out, check_audio=True)
    # and back: lhotse reads the segments, ids are the prefixed ones
    recs2, sups2 = kaldi_dir_to_lhotse(out)
    assert sorted(s.id for s in sups2) == sorted(read_table(out / "utt2spk"))
    assert {s.id: s.text for s in sups2}["S0-utt21"] == "WORD2"


def test_export_without_speaker_or_text(tmp_path):
    recs, sups = _manifests(tmp_path, speaker_of=lambda i: None, text_of=lambda i: None)
    out = tmp_path / "kaldi"
    s = lhotse_to_kaldi_dir(recs, sups, out)
    assert not (out / "text").exists()  # lhotse would write "utt None"
    assert read_table(out / "utt2spk") == {"utt00": "utt00", "utt10": "utt10", "utt20": "utt20"}
    assert s.num_speakers == 3


def test_export_rejects_whitespace_ids(tmp_path):
    recs, sups = _manifests(tmp_path, speaker_of=lambda i: "spk A")
    with pytest.raises(AsrktError, match=r"supervision speaker 'spk A' is empty or contains whitespace"):
        lhotse_to_kaldi_dir(recs, sups, tmp_path / "kaldi")
    assert not (tmp_path / "kaldi").exists()


def test_import_validates_first(tiny_data_dir):
    lines = (tiny_data_dir / "utt2spk").read_text().splitlines()
    (tiny_data_dir / "utt2spk").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(AsrktError, match=rf"{tiny_data_dir}/text:6: utterance 'spk1-u2' is not in utt2spk"):
        kaldi_dir_to_lhotse(tiny_data_dir)


def test_import_mixed_sample_rates(tiny_data_dir):
    wav = read_table(tiny_data_dir / "wav.scp")
    slow = tiny_data_dir.parent / "slow.wav"
    soundfile.write(slow, np.zeros(800, dtype=np.float32), 8000)
    wav["spk1-u1"] = str(slow)
    write_table(tiny_data_dir / "wav.scp", wav)
    with pytest.raises(AsrktError, match=r"wav.scp: recordings have different sample rates \(8000 Hz in "
                                         r"'spk1-u1', 16000 Hz in 'spk0-u0'\)"):
        kaldi_dir_to_lhotse(tiny_data_dir)


def test_cli_import_export(tiny_data_dir, tmp_path, capsys):
    assert bridge_cli.main(["import", str(tiny_data_dir), str(tmp_path / "m"), "--prefix", "tiny"]) is None
    rec, sup = capsys.readouterr().out.split()
    assert rec.endswith("tiny_recordings.jsonl.gz") and sup.endswith("tiny_supervisions.jsonl.gz")
    assert bridge_cli.main(["export", rec, sup, str(tmp_path / "k")]) is None
    assert read_table(tmp_path / "k" / "text") == read_table(tiny_data_dir / "text")
    with pytest.raises(SystemExit) as e:
        bridge_cli.main(["export", str(tmp_path / "none.jsonl.gz"), sup, str(tmp_path / "k2")])
    assert e.value.code == 1
    assert f"ERROR: {tmp_path}/none.jsonl.gz: manifest not found" in capsys.readouterr().err
