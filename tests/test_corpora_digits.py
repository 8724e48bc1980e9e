"""asrkt.corpora.digits: the espeak-ng digits corpus (tiny size: a few seconds per synthesis)."""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from asrkt.bin import prepare_digits as cli
from asrkt.corpora import digits
from asrkt.data.kaldi_dir import DataDir, c_sorted
from asrkt.utils.errors import AsrktError

SEED = 5
# Smaller than tiny, for the tests that synthesise a second corpus.
MICRO = digits.SizeSpec(utts={"train": 6, "dev": 3, "test": 3}, voices={"train": 3, "dev": 2, "test": 2})


def _wav_hashes(audio_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(audio_dir)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(audio_dir.rglob("*.wav"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    manifest = digits.prepare_digits("tiny", SEED, root / "audio", root / "data", nj=1)
    return root, manifest


def test_counts_and_data_dirs(tiny):
    root, manifest = tiny
    spec = digits.SIZES["tiny"]
    for s in digits.SETS:
        d = DataDir.load(root / "data" / s)
        assert len(d.utts) == spec.utts[s] == manifest["counts"][s]
        assert len(d.spk2utt) == spec.voices[s]
        assert set(d.wav_scp) == set(d.text) == set(d.utt2spk) == set(d.utt2dur)
        for utt, spk in d.utt2spk.items():
            assert utt.startswith(spk + "-") and not any(c.isspace() for c in utt)
            path = Path(d.wav_scp[utt])
            assert path.is_absolute() and path == root / "audio" / s / spk / f"{utt}.wav"
        # Speaker-prefixed ids: C-sorted utterances come grouped by speaker, speakers in C order too.
        spk_order = [d.utt2spk[u] for u in c_sorted(d.utt2spk)]
        assert spk_order == sorted(spk_order, key=lambda k: k.encode())
    assert (root / "audio" / "manifest.yaml").is_file()
    assert manifest["config"]["seed"] == SEED and manifest["config"]["size"] == "tiny"
    assert manifest["config"]["espeak_version"]
    assert 0 < manifest["total_hours"] < 0.1


def test_voices_are_disjoint_across_sets(tiny):
    root, manifest = tiny
    spk = {s: set(DataDir.load(root / "data" / s).spk2utt) for s in digits.SETS}
    assert not spk["train"] & spk["dev"] and not spk["train"] & spk["test"] and not spk["dev"] & spk["test"]
    # Stronger: a held-out variant (timbre) is not heard in training with any accent.
    variants = manifest["variants"]
    assert not set(variants["train"]) & (set(variants["dev"]) | set(variants["test"]))
    assert not set(variants["dev"]) & set(variants["test"])
    # The split by variant is fixed by the seed and is the same whatever the size.
    voices = digits.available_voices()
    split = digits.split_voices(voices, SEED)
    for s in digits.SETS:
        assert set(manifest["voices"][s]) <= {v.name for v in split[s]}


def test_wav_format_and_durations(tiny):
    root, _ = tiny
    d = DataDir.load(root / "data" / "train")
    for utt in d.utts:
        with wave.open(d.wav_scp[utt], "rb") as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert abs(x.size / 16000 - float(d.utt2dur[utt])) < 1e-3
        assert 0.3 < x.size / 16000 < 8.0
        peak = np.abs(x.astype(np.int32)).max()
        assert 32767 * 10 ** (-20.5 / 20) < peak < 32767  # the drawn level, never clipped


def test_texts_are_digit_strings(tiny):
    root, _ = tiny
    words = set()
    for s in digits.SETS:
        for line in DataDir.load(root / "data" / s).text.values():
            w = line.split()
            assert 1 <= len(w) <= 7
            words.update(w)
    assert words <= set(digits.WORDS) and len(words) >= 8


def test_same_seed_gives_identical_audio(tiny, tmp_path):
    """Utterances re-rendered alone, in another order, in this process, are byte-identical to the corpus."""
    root, _ = tiny
    plan = digits.make_plan("tiny", SEED, digits.available_voices())
    assert plan == digits.make_plan("tiny", SEED, digits.available_voices())
    picked = [plan["test"][3], plan["train"][17], plan["dev"][0], plan["train"][2]]
    for u in picked:
        out = tmp_path / f"{u['utt']}.wav"
        digits.write_wav(out, digits.render(u))
        s = next(s for s in digits.SETS if u in plan[s])
        assert out.read_bytes() == digits.wav_path(root / "audio", s, u["spk"], u["utt"]).read_bytes()
    other = digits.make_plan("tiny", SEED + 1, digits.available_voices())
    assert [u["text"] for u in other["train"]] != [u["text"] for u in plan["train"]]


def test_parallel_synthesis_is_identical(tmp_path, monkeypatch):
    """Two worker processes produce exactly the files of one process (espeak's hidden state is reset)."""
    monkeypatch.setitem(digits.SIZES, "micro", MICRO)
    digits.prepare_digits("micro", SEED, tmp_path / "one" / "audio", tmp_path / "one" / "data", nj=1)
    digits.prepare_digits("micro", SEED, tmp_path / "two" / "audio", tmp_path / "two" / "data", nj=2)
    one, two = tmp_path / "one" / "audio", tmp_path / "two" / "audio"
    assert len(_wav_hashes(one)) == 12 and _wav_hashes(one) == _wav_hashes(two)
    for s in digits.SETS:
        for table in ("text", "utt2spk", "utt2dur"):
            assert (one / s / table).read_bytes() == (two / s / table).read_bytes()


def test_rerun_skips_synthesis(tiny, caplog):
    root, _ = tiny
    wav = next((root / "audio" / "train").rglob("*.wav"))
    before = (wav.stat().st_mtime_ns, (root / "data" / "train" / "wav.scp").stat().st_mtime_ns)
    with caplog.at_level(logging.INFO):
        digits.prepare_digits("tiny", SEED, root / "audio", root / "data")
    assert "skipping synthesis" in caplog.text
    assert "up to date" in caplog.text
    assert (wav.stat().st_mtime_ns, (root / "data" / "train" / "wav.scp").stat().st_mtime_ns) == before


def test_other_parameters_regenerate(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(digits.SIZES, "micro", MICRO)
    audio, data = tmp_path / "audio", tmp_path / "data"
    digits.prepare_digits("micro", 1, audio, data)
    (data / "train" / "feats.scp").write_text("stale\n")  # made by a later stage for the old audio
    first = _wav_hashes(audio)
    with caplog.at_level(logging.INFO):
        manifest = digits.prepare_digits("micro", 2, audio, data)
    assert "regenerating" in caplog.text
    assert manifest["config"]["seed"] == 2
    assert yaml.safe_load((audio / "manifest.yaml").read_text())["config"]["seed"] == 2
    assert _wav_hashes(audio) != first
    assert not (data / "train" / "feats.scp").exists()  # the data dir was replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "data"]  # no temporary folders left


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "precious.txt").write_text("keep me")
    with pytest.raises(AsrktError, match="holds no digits manifest.yaml; refusing to overwrite"):
        digits.prepare_digits("tiny", 1, tmp_path / "audio", tmp_path / "data")
    assert (tmp_path / "audio" / "precious.txt").read_text() == "keep me"


def test_unknown_size_and_bad_nj(tmp_path, capsys):
    with pytest.raises(AsrktError, match="unknown digits size 'huge'"):
        digits.prepare_digits("huge", 1, tmp_path / "a", tmp_path / "d")
    with pytest.raises(SystemExit) as e:
        cli.main(["--size", "tiny", "--nj", "0", "--audio-dir", str(tmp_path / "a"), "--data-dir",
                  str(tmp_path / "d")])
    assert e.value.code == 1
    assert "ERROR: --nj must be at least 1" in capsys.readouterr().err


def _recipe_copy(repo_root: Path, tmp_path: Path) -> Path:
    """A recipe folder like egs/digits (symlinks to the real local/, utils/ and path.sh)."""
    rec = tmp_path / "recipe"
    rec.mkdir()
    for name in ("local", "utils", "path.sh"):
        os.symlink(repo_root / "egs" / "digits" / name, rec / name)
    return rec


def test_data_sh(tiny, repo_root, tmp_path):
    root, _ = tiny
    rec = _recipe_copy(repo_root, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["local/data.sh", "--size", "tiny", "--seed", str(SEED), "--nj", "1", "--corpus-dir",
                        str(root / "audio")], cwd=rec, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "skipping synthesis" in r.stderr
    for s in digits.SETS:
        assert (rec / "data" / s / "wav.scp").read_text() == (root / "data" / s / "wav.scp").read_text()
    r = subprocess.run(["local/data.sh", "--sise", "tiny"], cwd=rec, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "unknown option '--sise'" in r.stderr


def test_rerun_after_a_killed_synthesis_removes_its_temporary_folder(tiny, tmp_path):
    """kill -9 during synthesis leaves <audio>/../.<audio>.tmp<pid>; the rerun removes it (its process is gone)
    but not the temporary folder of a synthesis that still runs (issue 16)."""
    root, _ = tiny
    audio = tmp_path / "audio"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "asrkt.bin.prepare_digits", "--size", "tiny", "--seed",
                             str(SEED), "--audio-dir", str(audio), "--data-dir", str(tmp_path / "data")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stale = tmp_path / f".audio.tmp{proc.pid}"
    try:
        deadline = time.monotonic() + 60
        while not (stale.is_dir() and any(stale.rglob("*.wav"))):
            assert proc.poll() is None and time.monotonic() < deadline, "the synthesis did not start"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert stale.is_dir() and not audio.exists()
    live = subprocess.Popen(["sleep", "60"])
    try:
        running = tmp_path / f".audio.tmp{live.pid}"  # as if another run were synthesising right now
        running.mkdir()
        digits.prepare_digits("tiny", SEED, audio, tmp_path / "data")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["audio", "data", running.name])
    finally:
        live.kill()
        live.wait()
    assert _wav_hashes(audio) == _wav_hashes(root / "audio")  # and the rerun made the whole corpus
