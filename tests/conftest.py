"""Shared fixtures: a tiny synthetic Kaldi data dir, the repository root, AN4's location, and the tiny digits
recipe run once per session (tiny_digits_run, from recipe_helpers)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkt.data.kaldi_dir import write_data_dir
from recipe_helpers import tiny_digits_run  # noqa: F401  (a session fixture: defined once, here, so it runs once)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Interpret Triton kernels on the CPU (CI has no GPU).
os.environ.setdefault("TRITON_INTERPRET", "1")


def an4_location() -> Path | None:
    """AN4 from $ASRKT_AN4_DIR, else ../shared/data/an4 beside the checkout (where CI has it)."""
    env = os.environ.get("ASRKT_AN4_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "an4")
    for c in candidates:
        if (c / "etc" / "an4_train.transcription").is_file():
            return c
    return None


@pytest.fixture
def an4_dir() -> Path:
    loc = an4_location()
    if loc is None:
        pytest.skip("AN4 not found: set ASRKT_AN4_DIR or place it at ../shared/data/an4")
    return loc


@pytest.fixture
def run_bench():
    """``run_bench(name, args)``: main(args) of bench/<name>.py, loaded by path (bench/ is not a package), with
    torch's thread count restored afterwards (a bench sets its own)."""
    import importlib.util

    import torch

    def run(name: str, args: list[str]):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "bench" / f"{name}.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        threads = torch.get_num_threads()
        try:
            return bench.main(args)
        finally:
            torch.set_num_threads(threads)
    return run


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def make_data_dir(root: Path, num_speakers: int = 2, utts_per_speaker: int = 3, rate: int = 16000,
                  seed: int = 0, words=("ONE", "TWO", "THREE", "FOUR")) -> Path:
    """Write short noisy-tone WAVs and a valid Kaldi data dir ``root/data`` over them; return its path."""
    rng = np.random.default_rng(seed)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav_scp, text, utt2spk = {}, {}, {}
    for s in range(num_speakers):
        spk = f"spk{s}"
        for u in range(utts_per_speaker):
            utt = f"{spk}-u{u}"
            dur = 0.5 + 0.25 * u
            t = np.arange(int(dur * rate)) / rate
            x = 0.3 * np.sin(2 * np.pi * (200 + 100 * s + 50 * u) * t) + 0.02 * rng.standard_normal(t.size)
            path = wav_dir / f"{utt}.wav"
            soundfile.write(path, x.astype(np.float32), rate, subtype="PCM_16")
            wav_scp[utt] = str(path)
            text[utt] = " ".join(rng.choice(words, size=1 + u))
            utt2spk[utt] = spk
    out = root / "data"
    write_data_dir(out, wav_scp=wav_scp, text=text, utt2spk=utt2spk)
    return out


@pytest.fixture
def tiny_data_dir(tmp_path) -> Path:
    """A valid 2-speaker, 6-utterance Kaldi data dir (wav.scp, text, utt2spk, spk2utt) with real WAVs."""
    return make_data_dir(tmp_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (the smoke recipe run); CI runs them too")
