"""The embedded default corpus: connected-digit strings synthesised with espeak-ng.

Every English accent in the espeak-ng data crossed with every voice variant is one speaker. The variants
(the timbre) are split between train, dev and test once per seed, so that test and dev voices are never
heard in training, under any accent. Each utterance draws its own speaking rate, pitch, pitch range,
volume and word gap, gets short leading/trailing silence, white-to-pink noise at a random SNR and a random
level, and is resampled to 16 kHz 16-bit PCM.

The whole corpus is a function of (size, seed, espeak-ng data): every utterance's parameters come from a
plan drawn in the parent from the seed, and every utterance is rendered by a freshly loaded espeak (see
:mod:`asrkt.corpora.espeak`), so the WAVs are byte-identical whatever the number of jobs.

Layout: ``<audio-dir>/<set>/<spk>/<utt>.wav``, ``<audio-dir>/<set>/{text,utt2spk,utt2dur}``,
``<audio-dir>/manifest.yaml``; Kaldi data dirs ``<data-dir>/{train,dev,test}``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os
import re
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import yaml

from asrkt.corpora.common import replace_data_dir, swap_in_dir
from asrkt.utils.progress import Progress
from asrkt.corpora.espeak import Espeak, english_languages, voice_variants
from asrkt.data.kaldi_dir import c_sorted, read_table, write_table
from asrkt.features.audio import resample
from asrkt.utils.atomic import atomic_write_text, remove_stale_temps, tmp_name
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "OH")
SETS = ("train", "dev", "test")
SAMPLE_RATE = 16000
# Bump when anything changes the audio or the plan for a given seed: a rerun then regenerates.
GENERATOR_VERSION = 1
# Fraction of voice variants held out for dev and for test.
HELD_OUT_VARIANT_FRACTION = 0.1

# Per-utterance random ranges (inclusive). espeak's defaults: rate 175 wpm, pitch 50, range 50, volume 100
# (which clips for many variants, hence the lower volumes).
RANGES = {
    "num_words": (1, 7),
    "rate": (130, 210),
    "pitch": (20, 80),
    "range": (10, 90),
    "volume": (40, 80),
    "wordgap": (0, 3),
    "lead_s": (0.05, 0.40),
    "trail_s": (0.05, 0.40),
    "snr_db": (10.0, 30.0),
    "pink": (0.0, 1.0),
    "peak_db": (-20.0, -2.0),
}


@dataclasses.dataclass(frozen=True)
class SizeSpec:
    """Utterances per set, and voices per set (None: every voice of that set)."""

    utts: dict
    voices: dict


SIZES = {
    # A few seconds to make: for tests.
    "tiny": SizeSpec(utts={"train": 40, "dev": 10, "test": 10}, voices={"train": 10, "dev": 5, "test": 5}),
    # About 1.5 h of training speech, 10 min each of dev and test (mean utterance about 1.72 s).
    "default": SizeSpec(utts={"train": 3150, "dev": 350, "test": 350}, voices={"train": None, "dev": None, "test": None}),
}


@dataclasses.dataclass(frozen=True)
class Voice:
    lang: str
    variant: str

    @property
    def name(self) -> str:
        """What espeak's SetVoiceByName takes."""
        return f"{self.lang}+{self.variant}"

    @property
    def speaker(self) -> str:
        """Speaker id: ``<accent>.<variant>`` over [a-z0-9_.]; all these sort after '-', so speaker-prefixed
        utterance ids ``<spk>-NNNNN`` sort in the same order as their speakers (Kaldi's requirement)."""
        return f"{_sanitise(self.lang)}.{_sanitise(self.variant)}"


def _sanitise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@functools.lru_cache(maxsize=None)
def available_voices() -> tuple[Voice, ...]:
    """Every ``accent+variant`` pair espeak accepts and speaks with, in a fixed order (probed once per process)."""
    voices = []
    with Espeak() as es:
        for lang in english_languages():
            for variant in voice_variants():
                v = Voice(lang, variant)
                try:
                    ok = es.synth("one", v.name).size > 0
                except AsrktError:
                    ok = False
                if ok:
                    voices.append(v)
                else:
                    logger.warning("skipping espeak voice %s: it does not synthesise", v.name)
    seen = {}
    for v in voices:
        if v.speaker in seen:
            raise AsrktError(f"espeak voices {seen[v.speaker].name} and {v.name} map to the same speaker id "
                             f"{v.speaker}")
        seen[v.speaker] = v
    if not voices:
        raise AsrktError("espeak-ng has no usable English voice in its data folder")
    return tuple(voices)


def split_voices(voices, seed: int) -> dict[str, list[Voice]]:
    """Assign voices to train/dev/test by variant: a held-out variant is unheard in training in any accent."""
    variants = sorted({v.variant for v in voices})
    if len(variants) < 3:
        raise AsrktError(f"need at least 3 espeak voice variants for disjoint train/dev/test, found {len(variants)}")
    order = [variants[i] for i in np.random.default_rng([seed, 1]).permutation(len(variants))]
    n = max(1, round(HELD_OUT_VARIANT_FRACTION * len(variants)))
    held = {"test": set(order[:n]), "dev": set(order[n:2 * n]), "train": set(order[2 * n:])}
    return {s: [v for v in voices if v.variant in held[s]] for s in SETS}


def make_plan(size: str, seed: int, voices) -> dict[str, list[dict]]:
    """Every utterance's text, voice and rendering parameters, drawn from the seed (JSON-able dicts)."""
    if size not in SIZES:
        raise AsrktError(f"unknown digits size '{size}', choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    by_set = split_voices(voices, seed)
    plan = {}
    for set_index, name in enumerate(SETS):
        pool = by_set[name]
        pool = [pool[i] for i in np.random.default_rng([seed, 2, set_index]).permutation(len(pool))]
        if spec.voices[name] is not None:
            pool = pool[: spec.voices[name]]
        rng = np.random.default_rng([seed, 3, set_index])
        utts = []
        for i in range(spec.utts[name]):
            voice = pool[i % len(pool)]
            lo, hi = RANGES["num_words"]
            words = [WORDS[k] for k in rng.integers(0, len(WORDS), size=int(rng.integers(lo, hi + 1)))]
            u = {"utt": f"{voice.speaker}-{i:05d}", "spk": voice.speaker, "voice": voice.name,
                 "text": " ".join(words)}
            for key in ("rate", "pitch", "range", "volume", "wordgap"):
                lo, hi = RANGES[key]
                u[key] = int(rng.integers(lo, hi + 1))
            for key in ("lead_s", "trail_s", "snr_db", "pink", "peak_db"):
                u[key] = float(rng.uniform(*RANGES[key]))
            u["seed"] = int(rng.integers(0, 2**31 - 1))
            utts.append(u)
        plan[name] = utts
    return plan


def _noise(rng: np.random.Generator, n: int, pink: float) -> np.ndarray:
    """Unit-power noise, a mix of white and pink (1/f power, shaped in the frequency domain)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    pinkn = np.fft.irfft(spec / np.sqrt(f), n)
    pinkn /= np.sqrt(np.mean(pinkn**2)) + 1e-12
    x = np.sqrt(1.0 - pink) * white + np.sqrt(pink) * pinkn
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def render(u: dict) -> np.ndarray:
    """Synthesise one planned utterance (see :func:`make_plan`): int16 samples at 16 kHz.

    A freshly loaded espeak per utterance, so the result depends on ``u`` alone.
    """
    with Espeak() as es:
        raw = es.synth(u["text"].lower(), u["voice"], seed=u["seed"], rate=u["rate"], pitch=u["pitch"],
                       range=u["range"], volume=u["volume"], wordgap=u["wordgap"])
        native_rate = es.rate
    if raw.size == 0:
        raise fail(f"espeak produced no audio for '{u['text']}' with voice {u['voice']}", utt=u["utt"])
    speech = resample(raw.astype(np.float64) / 32768.0, native_rate, SAMPLE_RATE).astype(np.float64)
    lead, trail = int(u["lead_s"] * SAMPLE_RATE), int(u["trail_s"] * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    rng = np.random.default_rng([u["seed"], 4])
    speech_power = float(np.mean(speech**2)) + 1e-12
    x += _noise(rng, x.size, u["pink"]) * np.sqrt(speech_power / 10 ** (u["snr_db"] / 10))
    x *= 10 ** (u["peak_db"] / 20) / (np.max(np.abs(x)) + 1e-12)
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")


def write_wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit mono PCM with the canonical 44-byte header (stdlib wave: no chunk varies between runs)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def _render_to_file(job):
    u, path = job
    samples = render(u)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, samples)
    return u["utt"], int(samples.size)


def wav_path(audio_dir, set_name: str, spk: str, utt: str) -> Path:
    return Path(audio_dir) / set_name / spk / f"{utt}.wav"


def corpus_config(size: str, seed: int, voices, version: str) -> dict:
    """What the audio depends on; an audio folder with the same config is reused as it is."""
    return {"generator_version": GENERATOR_VERSION, "size": size, "seed": int(seed), "espeak_version": version,
            "sizes": dataclasses.asdict(SIZES[size]), "ranges": {k: list(v) for k, v in RANGES.items()},
            "voices": [v.name for v in voices]}


def _synthesise(plan: dict, out_dir: Path, nj: int) -> dict[str, dict[str, int]]:
    """Render every planned utterance into ``out_dir``; returns set -> utt -> number of samples."""
    jobs = [(u, str(wav_path(out_dir, s, u["spk"], u["utt"]))) for s in SETS for u in plan[s]]
    set_of = {u["utt"]: s for s in SETS for u in plan[s]}
    lengths = {s: {} for s in SETS}
    progress = Progress(len(jobs), "utts", desc="synthesising")
    pool = None
    try:
        if nj <= 1:
            results = map(_render_to_file, jobs)
        else:
            # spawn: children start clean (no inherited espeak state, no forked threads).
            pool = multiprocessing.get_context("spawn").Pool(nj)
            results = pool.imap_unordered(_render_to_file, jobs, chunksize=8)
        for utt, n in results:
            lengths[set_of[utt]][utt] = n
            progress.update()
        if pool is not None:
            pool.close()
            pool.join()
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        progress.close()
    return lengths


def _audio_is_complete(audio_dir: Path, manifest: dict) -> bool:
    for s in SETS:
        try:
            utt2spk = read_table(audio_dir / s / "utt2spk")
        except AsrktError:
            return False
        if len(utt2spk) != manifest.get("counts", {}).get(s):
            return False
        if not all(wav_path(audio_dir, s, spk, utt).is_file() for utt, spk in utt2spk.items()):
            return False
    return True


def _read_manifest(audio_dir: Path) -> dict | None:
    try:
        return yaml.safe_load((audio_dir / "manifest.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None


def prepare_digits(size: str, seed: int, audio_dir, data_dir, nj: int = 1) -> dict:
    """Synthesise the digits corpus (unless ``audio_dir`` already holds it) and write the data dirs.

    Returns the manifest (also in ``audio_dir/manifest.yaml``). A folder at ``audio_dir`` made with other
    parameters is regenerated (under a temporary name, then swapped in); any other non-empty folder there
    is refused rather than deleted.
    """
    if size not in SIZES:
        raise AsrktError(f"unknown digits size '{size}', choose one of {', '.join(SIZES)}")
    audio_dir = Path(audio_dir).absolute()
    data_dir = Path(data_dir)
    remove_stale_temps(audio_dir.parent)  # what a killed synthesis left (also when the audio is complete)
    with Espeak() as es:
        version = es.version
    voices = available_voices()
    config = corpus_config(size, seed, voices, version)
    manifest = _read_manifest(audio_dir)
    if manifest is not None and manifest.get("config") == config and _audio_is_complete(audio_dir, manifest):
        logger.info("%s already holds the digits corpus (size %s, seed %d): skipping synthesis",
                    audio_dir, size, seed)
    else:
        if audio_dir.exists() and any(audio_dir.iterdir()) and manifest is None:
            raise fail("exists, is not empty and holds no digits manifest.yaml; refusing to overwrite it, "
                       "choose another --audio-dir", audio_dir)
        if manifest is not None:
            logger.info("%s was made with other parameters (or is incomplete): regenerating it", audio_dir)
        manifest = _generate(size, seed, voices, config, audio_dir, nj)
    for s in SETS:
        utt2spk = read_table(audio_dir / s / "utt2spk")
        wav_scp = {utt: str(wav_path(audio_dir, s, spk, utt)) for utt, spk in utt2spk.items()}
        replace_data_dir(data_dir / s, wav_scp=wav_scp, text=read_table(audio_dir / s / "text"), utt2spk=utt2spk,
                         utt2dur=read_table(audio_dir / s / "utt2dur"))
    return manifest


def _generate(size, seed, voices, config, audio_dir: Path, nj: int) -> dict:
    plan = make_plan(size, seed, voices)
    total = sum(len(plan[s]) for s in SETS)
    logger.info("synthesising %d digit utterances (size %s, seed %d, %d jobs) into %s", total, size, seed, nj,
                audio_dir)
    tmp = tmp_name(audio_dir)  # (and a stale one of a killed run is removed)
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.monotonic()
    try:
        lengths = _synthesise(plan, tmp, nj)
        manifest = {"corpus": "digits", "config": config, "sample_rate": SAMPLE_RATE, "counts": {}, "hours": {},
                    "voices": {}, "variants": {}}
        for s in SETS:
            utts = plan[s]
            write_table(tmp / s / "text", {u["utt"]: u["text"] for u in utts})
            write_table(tmp / s / "utt2spk", {u["utt"]: u["spk"] for u in utts})
            write_table(tmp / s / "utt2dur", {utt: f"{n / SAMPLE_RATE:.4f}" for utt, n in lengths[s].items()})
            manifest["counts"][s] = len(utts)
            manifest["hours"][s] = round(sum(lengths[s].values()) / SAMPLE_RATE / 3600, 4)
            manifest["voices"][s] = c_sorted({u["voice"] for u in utts})
            manifest["variants"][s] = sorted({u["voice"].split("+", 1)[1] for u in utts})
        manifest["total_hours"] = round(sum(manifest["hours"].values()), 4)
        manifest["megabytes"] = round(sum(p.stat().st_size for p in tmp.rglob("*.wav")) / 1e6, 1)
        manifest["synthesis_seconds"] = round(time.monotonic() - start, 1)
        manifest["jobs"] = nj
        atomic_write_text(tmp / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False, width=120, default_flow_style=None))
        swap_in_dir(tmp, audio_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("synthesised %d utterances, %.2f h (train %.2f h, dev %.2f h, test %.2f h), %.1f MB in %.0f s",
                total, manifest["total_hours"], manifest["hours"]["train"], manifest["hours"]["dev"],
                manifest["hours"]["test"], manifest["megabytes"], manifest["synthesis_seconds"])
    return manifest
