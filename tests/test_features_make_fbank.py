"""The feature stage end to end: compute_fbank jobs, finish_features, compute_cmvn_stats, utils/make_fbank.sh."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import yaml

from asrkt.bin import compute_cmvn_stats as cmvn_cli
from asrkt.bin import compute_fbank as fbank_cli
from asrkt.bin import finish_features as finish_cli
from asrkt.data.kaldi_dir import read_table, write_data_dir, write_table
from asrkt.data.subset import split_data_dir
from asrkt.features.audio import read_audio
from asrkt.features.cmvn import CmvnApplier
from asrkt.features.fbank import FbankConfig, compute_fbank
from asrkt.features.info import check_same_features, read_feats_info
from asrkt.utils.errors import AsrktError
from conftest import make_data_dir

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "egs" / "TEMPLATE" / "utils"


def run_cli(main, argv, capsys):
    """Run a bin tool in-process; return (exit status, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def expected_feats(data_dir, cfg=None) -> dict[str, np.ndarray]:
    wav_scp = read_table(data_dir / "wav.scp")
    return {utt: compute_fbank(*read_audio(v), cfg or FbankConfig()) for utt, v in wav_scp.items()}


def test_compute_fbank_writes_what_the_library_computes(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "fbank"
    code, err = run_cli(fbank_cli.main, [tiny_data_dir, f"ark,scp:{out}/raw.1.ark,{out}/raw.1.scp"], capsys)
    assert code == 0, err
    assert "6/6 utts" in err and "utts/s" in err and "ETA" in err  # progress line (stderr is no terminal)
    feats = dict(kaldiio.load_scp(str(out / "raw.1.scp")))
    want = expected_feats(tiny_data_dir)
    assert list(feats) == sorted(want)
    for utt in want:
        np.testing.assert_array_equal(feats[utt], want[utt])


def test_compute_fbank_config_file_and_overrides(tiny_data_dir, tmp_path, capsys):
    conf = tmp_path / "fbank.yaml"
    conf.write_text("num_mel_bins: 23\nframe_shift_ms: 20\n")
    out = tmp_path / "fbank"
    code, err = run_cli(fbank_cli.main, ["--config", conf, "--num-mel-bins", "30", tiny_data_dir,
                                         f"ark,scp:{out}/raw.ark,{out}/raw.scp"], capsys)
    assert code == 0, err
    m = kaldiio.load_scp(str(out / "raw.scp"))["spk0-u0"]  # 0.5 s
    assert m.shape == (24, 30)
    code, err = run_cli(fbank_cli.main, ["--num-mel-bin", "30", tiny_data_dir, f"ark:{out}/x.ark"], capsys)
    assert code == 2 and "--num-mel-bin" in err  # argparse: unknown option
    assert not (out / "x.ark").exists()


def test_bad_wav_in_the_middle_leaves_old_outputs_untouched(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "fbank"
    spec = f"ark,scp:{out}/raw.1.ark,{out}/raw.1.scp"
    assert run_cli(fbank_cli.main, [tiny_data_dir, spec], capsys)[0] == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    wav = Path(read_table(tiny_data_dir / "wav.scp")["spk0-u2"])  # 3rd of 6 utterances
    wav.write_bytes(b"this is not a wav file" * 10)
    code, err = run_cli(fbank_cli.main, [tiny_data_dir, spec], capsys)
    assert code == 1
    assert f"ERROR: {tiny_data_dir}/wav.scp, utterance 'spk0-u2': cannot read audio '{wav}'" in err
    # No temporary files left, and the earlier outputs are byte for byte what they were.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    fresh = tmp_path / "fresh"
    code, _ = run_cli(fbank_cli.main, [tiny_data_dir, f"ark,scp:{fresh}/raw.ark,{fresh}/raw.scp"], capsys)
    assert code == 1 and (not fresh.exists() or not any(fresh.iterdir()))


def test_empty_wav_error_names_file_and_utterance(tiny_data_dir, tmp_path, capsys):
    wav = Path(read_table(tiny_data_dir / "wav.scp")["spk1-u0"])
    soundfile.write(wav, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    code, err = run_cli(fbank_cli.main, [tiny_data_dir, f"ark,scp:{tmp_path}/a.ark,{tmp_path}/a.scp"], capsys)
    assert code == 1
    assert f"ERROR: {tiny_data_dir}/wav.scp, utterance 'spk1-u0': audio '{wav}' is empty" in err
    assert not (tmp_path / "a.ark").exists() and not (tmp_path / "a.scp").exists()


def test_too_short_wav_error(tiny_data_dir, tmp_path, capsys):
    wav = Path(read_table(tiny_data_dir / "wav.scp")["spk1-u1"])
    soundfile.write(wav, np.zeros(200, np.float32), 16000, subtype="PCM_16")
    code, err = run_cli(fbank_cli.main, [tiny_data_dir, f"ark:{tmp_path}/a.ark"], capsys)
    assert code == 1 and "wav.scp, utterance 'spk1-u1': audio too short for one frame: 200 samples" in err


def test_8khz_data_resampled_or_refused(tmp_path, capsys):
    d8 = make_data_dir(tmp_path / "r8", rate=8000)
    code, err = run_cli(fbank_cli.main, [d8, f"ark,scp:{tmp_path}/8.ark,{tmp_path}/8.scp"], capsys)
    assert code == 0, err
    feats = kaldiio.load_scp(str(tmp_path / "8.scp"))
    assert {u: m.shape for u, m in feats.items()} == {f"spk{s}-u{u}": (48 + 25 * u, 40) for s in (0, 1)
                                                      for u in range(3)}  # as for the same audio at 16 kHz
    # One warning for the job, with the count, an example, the rates and what upsampling costs.
    assert err.count("were resampled") == 1, err
    assert (f"{d8}/wav.scp: 6 of 6 utterances (e.g. 'spk0-u0') are sampled at 8000 Hz and were resampled to the "
            "fbank config's sample_rate 16000 Hz; upsampled audio has nothing above 4000 Hz, so the top 10 of 40 "
            "mel bins are empty. If the corpus is 8000 Hz, set sample_rate: 8000") in err
    code, err = run_cli(fbank_cli.main, ["--sample-rate", "8000", d8, f"ark:{tmp_path}/y.ark"], capsys)
    assert code == 0 and "were resampled" not in err
    code, err = run_cli(fbank_cli.main, ["--allow-resample", "false", d8, f"ark:{tmp_path}/x.ark"], capsys)
    assert code == 1
    assert f"{d8}/wav.scp, utterance 'spk0-u0': audio is sampled at 8000 Hz but the fbank config wants 16000" in err


def test_make_fbank_sh_shows_the_resampling_warning(tmp_path):
    d8 = make_data_dir(tmp_path / "r8", rate=8000, num_speakers=1, utts_per_speaker=2)
    proc = run_make_fbank(tmp_path, "--nj", 1, d8, "exp/make_fbank", "fbank")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: " in proc.stderr and "2 of 2 utterances" in proc.stderr
    assert "the top 10 of 40 mel bins are empty" in proc.stderr


def test_segments(tmp_path, capsys):
    rate = 16000
    x = (0.1 * np.random.default_rng(0).standard_normal(2 * rate)).astype(np.float32)
    soundfile.write(tmp_path / "rec.wav", x, rate, subtype="PCM_16")
    samples, _ = read_audio(str(tmp_path / "rec.wav"))
    d = tmp_path / "data"
    write_data_dir(d, wav_scp={"rec": str(tmp_path / "rec.wav")}, text=None,
                   utt2spk={"spk-a": "spk", "spk-b": "spk", "spk-c": "spk"},
                   segments={"spk-a": "rec 0.0 0.5", "spk-b": "rec 0.5 1.25", "spk-c": "rec 1.5 -1"})
    code, err = run_cli(fbank_cli.main, [d, f"ark,scp:{tmp_path}/s.ark,{tmp_path}/s.scp"], capsys)
    assert code == 0, err
    feats = kaldiio.load_scp(str(tmp_path / "s.scp"))
    for utt, (a, b) in {"spk-a": (0, 8000), "spk-b": (8000, 20000), "spk-c": (24000, 32000)}.items():
        np.testing.assert_array_equal(feats[utt], compute_fbank(samples[a:b], rate))
    write_table(d / "segments", {"spk-a": "rec 0.0 0.5", "spk-b": "rec 0.5 3.0", "spk-c": "rec 1.5 -1"})
    code, err = run_cli(fbank_cli.main, [d, f"ark:{tmp_path}/t.ark"], capsys)
    assert code == 1 and f"{d}/segments, utterance 'spk-b': segment ends at 3 s, past the end of recording" in err
    write_table(d / "segments", {"spk-a": "rec 0.0 0.5", "spk-b": "rec2 0.5 1.0", "spk-c": "rec 1.5 -1"})
    code, err = run_cli(fbank_cli.main, [d, f"ark:{tmp_path}/t.ark"], capsys)
    assert code == 1 and "utterance 'spk-b': recording 'rec2' is not in wav.scp" in err
    assert not (tmp_path / "t.ark").exists()


def compute_jobs(data_dir, fbank_dir, nj, capsys, extra=()):
    name = data_dir.name
    for j, job_dir in enumerate(split_data_dir(data_dir, nj), 1):
        code, err = run_cli(fbank_cli.main, [*extra, job_dir, f"ark,scp:{fbank_dir}/raw_fbank_{name}.{j}.ark,"
                                             f"{fbank_dir}/raw_fbank_{name}.{j}.scp"], capsys)
        assert code == 0, err


def test_finish_features(tiny_data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compute_jobs(tiny_data_dir, Path("fbank"), 2, capsys)  # relative ark paths in the job scps
    code, err = run_cli(finish_cli.main, ["--nj", 2, tiny_data_dir, "fbank"], capsys)
    assert code == 0, err
    d = tiny_data_dir
    want = expected_feats(d)
    # feats.scp: C-sorted, absolute ark paths, readable by plain kaldiio, also after moving the data dir.
    feats_scp = read_table(d / "feats.scp")
    assert list(feats_scp) == sorted(want)
    assert all(v.startswith(f"{tmp_path}/fbank/raw_fbank_data.") for v in feats_scp.values())
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(d, moved)
    monkeypatch.chdir("/")
    feats = dict(kaldiio.load_scp(str(moved / "feats.scp")))
    for utt in want:
        np.testing.assert_array_equal(feats[utt], want[utt])
    assert read_table(d / "utt2num_frames") == {u: str(m.shape[0]) for u, m in want.items()}
    info = yaml.safe_load((d / "feats_info.yaml").read_text())
    assert info["kind"] == "fbank" and info["dim"] == 40 and info["frame_shift_ms"] == 10.0
    assert info["config"]["num_mel_bins"] == 40 and len(info["config_hash"]) == 12
    assert info["num_utts"] == 6 and info["num_frames"] == sum(m.shape[0] for m in want.values())
    # Per-speaker CMVN: Kaldi layout, and zero mean per speaker once applied.
    stats = kaldiio.load_scp(str(moved / "cmvn.scp"))
    assert sorted(stats) == ["spk0", "spk1"] and stats["spk0"].dtype == np.float64
    assert stats["spk0"].shape == (2, 41) and stats["spk0"][0, -1] == sum(
        m.shape[0] for u, m in want.items() if u.startswith("spk0"))
    applier = CmvnApplier(moved)
    for spk in ("spk0", "spk1"):
        normed = np.concatenate([applier(u, feats[u]) for u in want if u.startswith(spk)])
        np.testing.assert_allclose(normed.mean(0), 0, atol=1e-3)
    # The standalone CMVN tool gives the same stats.
    code, err = run_cli(cmvn_cli.main, ["--spk2utt", f"ark:{d}/spk2utt", f"scp:{d}/feats.scp",
                                        f"ark:{tmp_path}/cmvn2.ark"], capsys)
    assert code == 0, err
    again = dict(kaldiio.load_ark(str(tmp_path / "cmvn2.ark")))
    for spk in ("spk0", "spk1"):
        np.testing.assert_allclose(again[spk], stats[spk], rtol=1e-12)
    # The feature record: equal for copies, a clear error for another config or a missing record.
    assert check_same_features(d, moved)["dim"] == 40
    info["config_hash"] = "0123456789ab"
    (moved / "feats_info.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(AsrktError, match=r"elsewhere/data/feats_info.yaml: features differ from .*config_hash"):
        check_same_features(d, moved)
    (moved / "feats_info.yaml").unlink()
    with pytest.raises(AsrktError, match=r"feats_info.yaml: missing: features were not computed"):
        read_feats_info(moved)


def test_finish_features_refuses_incomplete_or_mismatched_features(tiny_data_dir, tmp_path, capsys):
    d, fb = tiny_data_dir, tmp_path / "fbank"
    compute_jobs(d, fb, 2, capsys)
    code, err = run_cli(finish_cli.main, ["--nj", 3, d, fb], capsys)
    assert code == 1 and f"{fb}/raw_fbank_data.3.scp: missing: its compute_fbank job did not finish" in err
    code, err = run_cli(finish_cli.main, ["--nj", 2, "--num-mel-bins", 23, d, fb], capsys)
    assert code == 1 and "utterance 'spk0-u0': features of shape (48, 40), expected (frames > 0, 23)" in err
    scp1 = fb / "raw_fbank_data.1.scp"
    lines = scp1.read_text().splitlines()
    scp1.write_text("\n".join(lines[1:]) + "\n")
    code, err = run_cli(finish_cli.main, ["--nj", 2, d, fb], capsys)
    assert code == 1 and "1 of 6 utterances have no features (first: spk0-u0)" in err
    for name in ("feats.scp", "cmvn.scp", "utt2num_frames", "feats_info.yaml"):
        assert not (d / name).exists(), name


def test_compute_cmvn_stats_per_utterance(tiny_data_dir, tmp_path, capsys):
    fb = tmp_path / "fbank"
    assert run_cli(fbank_cli.main, [tiny_data_dir, f"ark,scp:{fb}/f.ark,{fb}/f.scp"], capsys)[0] == 0
    code, err = run_cli(cmvn_cli.main, [f"scp:{fb}/f.scp", f"ark,scp:{fb}/c.ark,{fb}/c.scp"], capsys)
    assert code == 0, err
    stats = kaldiio.load_scp(str(fb / "c.scp"))
    feats = kaldiio.load_scp(str(fb / "f.scp"))
    assert sorted(stats) == sorted(feats)
    np.testing.assert_allclose(stats["spk1-u2"][0, :-1], feats["spk1-u2"].sum(0), rtol=1e-5)
    write_table(tmp_path / "spk2utt", {"spk0": "spk0-u0 spk0-u9"})
    code, err = run_cli(cmvn_cli.main, ["--spk2utt", tmp_path / "spk2utt", f"scp:{fb}/f.scp", f"ark:{fb}/d.ark"],
                        capsys)
    assert code == 1 and "utterance 'spk0-u1': utterance has features but is not in utt2spk" in err


# ------------------------------------------------------------------------------------ utils/make_fbank.sh
needs_launcher = pytest.mark.skipif(not (UTILS / "run_local.py").is_file(),
                                    reason="egs/TEMPLATE/utils/run_local.py (helper SHELL) is missing")


def run_make_fbank(cwd, *args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", LC_ALL="C")
    return subprocess.run(["bash", str(UTILS / "make_fbank.sh"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@needs_launcher
def test_make_fbank_sh(tiny_data_dir, tmp_path):
    (tmp_path / "fbank.yaml").write_text("num_mel_bins: 23\n")
    d = tiny_data_dir.relative_to(tmp_path)  # relative paths, as in a recipe
    proc = run_make_fbank(tmp_path, "--nj", 2, "--fbank-config", "fbank.yaml", d, "exp/make_fbank", "fbank")
    assert proc.returncode == 0, proc.stderr
    assert "Succeeded creating fbank features" in proc.stderr
    feats = kaldiio.load_scp(str(tiny_data_dir / "feats.scp"))
    want = expected_feats(tiny_data_dir, FbankConfig(num_mel_bins=23))
    assert sorted(feats) == sorted(want)
    for utt in want:
        np.testing.assert_array_equal(feats[utt], want[utt])
    assert all(v.startswith(f"{tmp_path}/fbank/") for v in read_table(tiny_data_dir / "feats.scp").values())
    assert sorted(kaldiio.load_scp(str(tiny_data_dir / "cmvn.scp"))) == ["spk0", "spk1"]
    assert yaml.safe_load((tiny_data_dir / "feats_info.yaml").read_text())["dim"] == 23
    assert {p.name for p in (tmp_path / "exp" / "make_fbank").iterdir()} == {"make_fbank_data.1.log",
                                                                           "make_fbank_data.2.log"}

    # A bad wav: the stage fails with the utterance named; the previous feature tables are back and still read
    # (issue 16: their arks used to be deleted), and nothing of the failed run is left.
    arks = sorted(p.name for p in (tmp_path / "fbank").iterdir())
    tables = {n: (tiny_data_dir / n).read_text() for n in ("feats.scp", "cmvn.scp", "utt2num_frames",
                                                             "feats_info.yaml")}
    wav = Path(read_table(tiny_data_dir / "wav.scp")["spk1-u1"])
    good = wav.read_bytes()
    wav.write_bytes(b"garbage" * 20)
    proc = run_make_fbank(tmp_path, "--nj", 2, d, "exp/make_fbank", "fbank")
    assert proc.returncode != 0
    assert "utterance 'spk1-u1': cannot read audio" in proc.stderr  # the launcher's tail of the job log
    assert "the previous feature tables are back" in proc.stderr
    assert {n: (tiny_data_dir / n).read_text() for n in tables} == tables and not (tiny_data_dir / ".backup").exists()
    assert sorted(p.name for p in (tmp_path / "fbank").iterdir()) == arks
    feats = kaldiio.load_scp(str(tiny_data_dir / "feats.scp"))
    for utt in want:
        np.testing.assert_array_equal(feats[utt], want[utt])
    # Once a redo succeeds, only its own arks remain.
    wav.write_bytes(good)
    proc = run_make_fbank(tmp_path, "--nj", 2, d, "exp/make_fbank", "fbank")
    assert proc.returncode == 0, proc.stderr
    now = sorted(p.name for p in (tmp_path / "fbank").iterdir())
    assert len(now) == len(arks) and not set(now) & set(arks)
    assert all(v.split(":")[0].rsplit("/", 1)[1] in now for v in read_table(tiny_data_dir / "feats.scp").values())


def test_stereo_is_one_warning_and_a_truncated_wav_an_error(tmp_path, capsys):
    """Issue 16: a stereo WAV silently used channel 0; a WAV truncated after data preparation gave fewer frames
    while utt2dur disagreed, silently."""
    data = make_data_dir(tmp_path / "d", num_speakers=1)
    wav_scp = read_table(data / "wav.scp")
    x, rate = soundfile.read(wav_scp["spk0-u1"], dtype="float32")
    soundfile.write(wav_scp["spk0-u1"], np.stack([x, 0.5 * x], axis=1), rate, subtype="PCM_16")
    write_table(data / "utt2dur", {u: f"{0.5 + 0.25 * i:.3f}" for i, u in enumerate(sorted(wav_scp))})
    code, err = run_cli(fbank_cli.main, [data, f"ark:{tmp_path}/a.ark"], capsys)
    assert code == 0, err
    assert f"{data}/wav.scp: 1 recording(s) have 2 channels (e.g. utterance 'spk0-u1'): only channel 0 is used" in err
    path = Path(wav_scp["spk0-u2"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # half the bytes, the header unchanged
    code, err = run_cli(fbank_cli.main, [data, f"ark:{tmp_path}/b.ark"], capsys)
    assert code == 1
    assert (f"{data}/utt2dur, utterance 'spk0-u2': the audio lasts 0.499 s but utt2dur says 1.000 s: the file was "
            "truncated or changed after data preparation") in err
