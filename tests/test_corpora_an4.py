"""asrkt.corpora.an4: the real corpus (skipped when absent) and bad inputs on small fake AN4 layouts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkt.bin import prepare_an4 as cli
from asrkt.corpora import an4
from asrkt.data.kaldi_dir import DataDir
from asrkt.utils.errors import AsrktError

DEV_SPEAKERS = {"fash", "fbbh", "fclc", "fejs", "ffmm", "fjam", "fjdn", "fjmd"}
TEST_SPEAKERS = {"fcaw", "fjlp", "fvap", "marh", "mdms2", "menk", "miry", "mjgm", "mjwl", "mmxg"}


def test_real_an4(an4_dir, tmp_path):
    summary = an4.prepare_an4(an4_dir, tmp_path / "data")
    assert {s: summary[s]["utts"] for s in an4.SETS} == {"train_nodev": 848, "train_dev": 100, "test": 130}
    assert summary["test"]["words"] == 773  # ESPnet egs2/an4: |test|130|773|
    assert summary["test"]["speakers"] == 10 and summary["train_dev"]["speakers"] == 8
    dev = DataDir.load(tmp_path / "data" / "train_dev")
    assert dev.utts[0] == "fash-an251-b" and dev.text["fash-an251-b"] == "YES"
    assert set(dev.spk2utt) == DEV_SPEAKERS
    assert set(DataDir.load(tmp_path / "data" / "test").spk2utt) == TEST_SPEAKERS
    seen = set()
    for s in an4.SETS:
        d = DataDir.load(tmp_path / "data" / s)
        for utt, spk in d.utt2spk.items():
            assert utt.startswith(spk + "-")
            pre, mid, last = utt.split("-")
            assert Path(d.wav_scp[utt]).is_absolute() and Path(d.wav_scp[utt]).name == f"{mid}-{pre}-{last}.wav"
            assert "<s>" not in d.text[utt] and "(" not in d.text[utt] and d.text[utt] == d.text[utt].upper()
        assert not seen & set(d.utt2spk)
        seen |= set(d.utt2spk)
    nodev = DataDir.load(tmp_path / "data" / "train_nodev")
    assert not set(nodev.spk2utt) & (DEV_SPEAKERS | TEST_SPEAKERS)
    assert abs(sum(float(v) for v in nodev.utt2dur.values()) + sum(float(v) for v in dev.utt2dur.values())
               - 2546.3) < 0.5
    # The hybrid objective's lexicon: the corpus's dictionary, every training word in it.
    lexicon = (tmp_path / "data" / "local" / "lexicon.txt").read_text().splitlines()
    assert lexicon == [ln for ln in (an4_dir / "etc" / "an4.dic").read_text().splitlines() if ln.strip()]
    words = {ln.split()[0] for ln in lexicon}
    assert {w for u in nodev.utts for w in nodev.text[u].split()} <= words


# ---------------------------------------------------------------- fake layouts for the failure paths

def make_fake_an4(root: Path, rate: int = 16000, train_lines=None, test_lines=None) -> Path:
    """A small AN4-shaped folder: 2 training and 1 test utterance with short generated WAVs."""
    train = [("an1-fabc-b", "YES"), ("cen1-mxyz-b", "ERASE A B C")]
    test = [("an9-ftst-b", "NO")]
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.transcription").write_text(
        "".join(train_lines or [f"<s> {w} </s> ({u})\n" for u, w in train]))
    (root / "etc" / "an4_test.transcription").write_text("".join(test_lines or [f"{w} ({u})\n" for u, w in test]))
    (root / "etc" / "an4_train.fileids").write_text("".join(f"an4_clstk/{u.split('-')[1]}/{u}\n" for u, _ in train))
    (root / "etc" / "an4_test.fileids").write_text("".join(f"an4test_clstk/{u.split('-')[1]}/{u}\n" for u, _ in test))
    rng = np.random.default_rng(0)
    for folder, utts in (("an4_clstk", train), ("an4test_clstk", test)):
        for u, _ in utts:
            path = root / "wav" / folder / u.split("-")[1] / f"{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, (0.1 * rng.standard_normal(rate // 2)).astype(np.float32), rate, subtype="PCM_16")
    return root


def test_fake_layout_parses(tmp_path):
    root = make_fake_an4(tmp_path / "an4")
    utts = an4.load_part(root, "train")
    assert [(u.utt, u.spk, u.text) for u in utts] == [("fabc-an1-b", "fabc", "YES"),
                                                    ("mxyz-cen1-b", "mxyz", "ERASE A B C")]
    assert utts[0].wav == (root / "wav" / "an4_clstk" / "fabc" / "an1-fabc-b.wav").absolute()
    assert utts[0].duration == pytest.approx(0.5)
    assert [u.text for u in an4.load_part(root, "test")] == ["NO"]
    # Too few training utterances for ESPnet's 100-utterance dev set: a clear error, not an empty set.
    with pytest.raises(AsrktError, match="training part has 2 utterances, need more than 100"):
        an4.load_an4(root)


def test_missing_corpus_dir(tmp_path, capsys):
    with pytest.raises(AsrktError) as e:
        an4.prepare_an4(tmp_path / "nowhere", tmp_path / "data")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "does not exist" in msg and "--corpus-dir" in msg
    with pytest.raises(SystemExit) as e:
        cli.main(["--corpus-dir", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "data")])
    assert e.value.code == 1
    assert "ERROR: AN4 corpus not found" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_missing_wav(tmp_path):
    root = make_fake_an4(tmp_path / "an4")
    wav = root / "wav" / "an4_clstk" / "mxyz" / "cen1-mxyz-b.wav"
    wav.unlink()
    with pytest.raises(AsrktError, match=r"cen1-mxyz-b\.wav, utterance 'mxyz-cen1-b': audio file not found"):
        an4.load_part(root, "train")


def test_unreadable_wav(tmp_path):
    root = make_fake_an4(tmp_path / "an4")
    wav = root / "wav" / "an4_clstk" / "fabc" / "an1-fabc-b.wav"
    wav.write_bytes(b"not a wav file at all")
    with pytest.raises(AsrktError, match=r"an1-fabc-b\.wav, utterance 'fabc-an1-b': cannot read audio"):
        an4.load_part(root, "train")


def test_wrong_sample_rate(tmp_path):
    root = make_fake_an4(tmp_path / "an4", rate=8000)
    with pytest.raises(AsrktError, match=r"utterance 'fabc-an1-b': sample rate is 8000 Hz, AN4 must be 16000 Hz"):
        an4.load_part(root, "train")


def test_line_without_id(tmp_path):
    root = make_fake_an4(tmp_path / "an4", train_lines=["<s> YES </s> (an1-fabc-b)\n", "<s> ERASE A B C </s>\n"])
    with pytest.raises(AsrktError, match=r"an4_train\.transcription:2: no '\(utterance-id\)' at the end"):
        an4.load_part(root, "train")


def test_id_listed_but_not_transcribed(tmp_path):
    root = make_fake_an4(tmp_path / "an4", train_lines=["<s> YES </s> (an1-fabc-b)\n"])
    with pytest.raises(AsrktError, match=r"an4_train\.transcription, utterance 'cen1-mxyz-b': listed in "
                                         r".*an4_train\.fileids but has no transcription"):
        an4.load_part(root, "train")


def test_duplicate_id(tmp_path):
    root = make_fake_an4(tmp_path / "an4", train_lines=["<s> YES </s> (an1-fabc-b)\n", "<s> NO </s> (an1-fabc-b)\n",
                                                        "<s> GO </s> (cen1-mxyz-b)\n"])
    with pytest.raises(AsrktError, match=r"an4_train\.transcription:2, utterance 'an1-fabc-b': duplicate"):
        an4.load_part(root, "train")


def test_bad_id_form(tmp_path):
    root = make_fake_an4(tmp_path / "an4")
    (root / "etc" / "an4_test.fileids").write_text("an4test_clstk/ftst/an9_ftst_b\n")
    with pytest.raises(AsrktError, match=r"an4_test\.fileids:1: utterance id 'an9_ftst_b' is not of the form"):
        an4.load_part(root, "test")


def _recipe_copy(repo_root: Path, tmp_path: Path) -> Path:
    rec = tmp_path / "recipe"
    rec.mkdir()
    for name in ("local", "utils", "path.sh"):
        os.symlink(repo_root / "egs" / "an4" / name, rec / name)
    return rec


def test_data_sh_without_corpus(repo_root, tmp_path):
    rec = _recipe_copy(repo_root, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["local/data.sh"], cwd=rec, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"AN4 corpus not found: {rec}/downloads/an4 does not exist" in r.stderr
    assert "--corpus-dir" in r.stderr


def test_data_sh(an4_dir, repo_root, tmp_path):
    rec = _recipe_copy(repo_root, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["local/data.sh", "--corpus-dir", str(an4_dir)], cwd=rec, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(DataDir.load(rec / "data" / "train_nodev").utts) == 848


@pytest.mark.parametrize("args, objective, lexicon", [
    ([], "hybrid", "data/local/lexicon.txt"),
    (["--corpus-dir", "/data/an4"], "hybrid", "data/local/lexicon.txt"),  # stage 0 puts the corpus's there
    (["--corpus-dir", "/data/an4", "--lexicon", "/my/an4.dic", "--objective", "ctc"], "ctc", "/my/an4.dic"),
])
def test_run_sh_defaults(repo_root, args, objective, lexicon):
    """egs/an4/run.sh: hybrid unless told otherwise, with the dictionary of the corpus stage 0 read."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["./run.sh", *args, "--help"], cwd=repo_root / "egs" / "an4", env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    values = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines() if line.startswith("  --")}
    assert values["--objective"] == objective and values["--lexicon"] == lexicon
