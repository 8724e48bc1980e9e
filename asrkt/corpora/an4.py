"""CMU AN4 (census / alphanumeric read speech, 16 kHz): Kaldi data dirs with ESPnet's conventions.

Input (the unpacked corpus, WAV version): ``etc/an4_{train,test}.transcription`` (``<s> WORDS </s> (id)``
for train, ``WORDS (id)`` for test), ``etc/an4_{train,test}.fileids`` (``an4_clstk/<spk>/<id>``) and
``wav/<fileid>.wav``. Utterance ids are renamed ESPnet's way, ``an251-fash-b`` -> ``fash-an251-b``
(speaker-prefixed, so C-sorted ids group by speaker); the first 100 sorted training utterances are
``train_dev`` (speakers fash..fjmd), the other 848 ``train_nodev``; the 130 test utterances are ``test``.
Text is kept as shipped (upper case), without ``<s>``/``</s>`` and the id. The corpus's pronunciation
dictionary ``etc/an4.dic`` becomes ``<data_dir>/local/lexicon.txt`` (Kaldi's data/local), the lexicon of the
recipe's hybrid objective.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import soundfile

from asrkt.corpora.common import replace_data_dir
from asrkt.utils.atomic import atomic_write_text
from asrkt.data.kaldi_dir import c_sorted
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
NUM_DEV = 100  # ESPnet: utils/subset_data_dir.sh --first data/train 100 data/train_dev
SETS = ("train_nodev", "train_dev", "test")
LEXICON = "etc/an4.dic"  # the corpus's pronunciation dictionary: WORD PH1 PH2 ...
# Original part -> (transcription, fileids), relative to the corpus folder.
PARTS = {"train": ("etc/an4_train.transcription", "etc/an4_train.fileids"),
         "test": ("etc/an4_test.transcription", "etc/an4_test.fileids")}

_LINE = re.compile(r"^(?P<words>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


@dataclasses.dataclass(frozen=True)
class Utterance:
    utt: str  # ESPnet id, <spk>-<prefix>-<suffix>
    spk: str
    wav: Path
    text: str
    duration: float


def espnet_id(orig: str, path=None, line=None) -> tuple[str, str]:
    """``an251-fash-b`` -> (``fash-an251-b``, ``fash``)."""
    parts = orig.split("-")
    if len(parts) != 3 or not all(parts):
        raise fail(f"utterance id '{orig}' is not of the form <prefix>-<speaker>-<suffix> (e.g. an251-fash-b)",
                   path, line=line)
    pre, spk, last = parts
    return f"{spk}-{pre}-{last}", spk


def read_transcription(path) -> dict[str, str]:
    """Original utterance id -> words, from ``WORDS (id)`` lines (``<s>``/``</s>`` around the words dropped)."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise fail("no '(utterance-id)' at the end of the line", path, line=lineno)
        words = m.group("words").split()
        if words[:1] == ["<s>"]:
            words = words[1:]
        if words[-1:] == ["</s>"]:
            words = words[:-1]
        utt = m.group("id")
        if not words:
            raise fail("empty transcription", path, utt=utt, line=lineno)
        if utt in out:
            raise fail("duplicate utterance id", path, utt=utt, line=lineno)
        out[utt] = " ".join(words)
    return out


def read_fileids(path) -> dict[str, str]:
    """Original utterance id -> path relative to ``wav/`` without extension (``an4_clstk/fash/an251-fash-b``).

    Checks that each id has AN4's ``<prefix>-<speaker>-<suffix>`` form and sits in its speaker's folder.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        rel = line.strip()
        if not rel:
            continue
        if len(rel.split()) != 1:
            raise fail(f"expected one path per line, got '{rel}'", path, line=lineno)
        utt = rel.rsplit("/", 1)[-1]
        _, spk = espnet_id(utt, path, lineno)
        folder = rel.split("/")[-2] if "/" in rel else None
        if folder != spk:
            raise fail(f"speaker '{spk}' in the id does not match the folder in '{rel}'", path, utt=utt, line=lineno)
        if utt in out:
            raise fail("duplicate utterance id", path, utt=utt, line=lineno)
        out[utt] = rel
    return out


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise fail("file not found (is this an unpacked AN4 corpus?)", path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise fail(f"not valid UTF-8 ({e.reason} at byte {e.start})", path) from None


def check_corpus_dir(corpus_dir) -> Path:
    corpus_dir = Path(corpus_dir)
    marker = corpus_dir / PARTS["train"][0]
    if not marker.is_file():
        what = "does not exist" if not corpus_dir.exists() else f"has no {PARTS['train'][0]}"
        raise AsrktError(f"AN4 corpus not found: {corpus_dir.absolute()} {what}. Unpack AN4 (the WAV version, "
                         f"with etc/ and wav/) there, or pass --corpus-dir DIR pointing at it")
    return corpus_dir


def load_part(corpus_dir, part: str) -> list[Utterance]:
    """All utterances of the original ``train`` or ``test`` part, checked against their WAV files."""
    corpus_dir = check_corpus_dir(corpus_dir)
    trans_path, ids_path = (corpus_dir / p for p in PARTS[part])
    text = read_transcription(trans_path)
    fileids = read_fileids(ids_path)
    for orig in fileids:
        if orig not in text:
            raise fail(f"listed in {ids_path} but has no transcription", trans_path, utt=orig)
    for orig in text:
        if orig not in fileids:
            raise fail(f"transcribed but not listed in {ids_path}", trans_path, utt=orig)
    utts = []
    for orig, rel in fileids.items():
        utt, spk = espnet_id(orig)
        wav = (corpus_dir / "wav" / f"{rel}.wav").absolute()
        utts.append(Utterance(utt, spk, wav, text[orig], _duration(wav, utt)))
    return utts


def _duration(wav: Path, utt: str) -> float:
    if not wav.is_file():
        raise fail("audio file not found", wav, utt=utt)
    try:
        info = soundfile.info(str(wav))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise fail(f"cannot read audio: {e}", wav, utt=utt) from None
    if info.samplerate != SAMPLE_RATE:
        raise fail(f"sample rate is {info.samplerate} Hz, AN4 must be {SAMPLE_RATE} Hz (convert it, e.g. "
                   f"sox in.wav -r {SAMPLE_RATE} out.wav)", wav, utt=utt)
    if info.channels != 1:
        raise fail(f"{info.channels} channels, AN4 is mono", wav, utt=utt)
    if info.frames == 0:
        raise fail("audio is empty (zero samples)", wav, utt=utt)
    return info.frames / info.samplerate


def load_an4(corpus_dir) -> dict[str, list[Utterance]]:
    """``train_nodev`` (848), ``train_dev`` (100) and ``test`` (130), each C-sorted by utterance id."""
    train, test = load_part(corpus_dir, "train"), load_part(corpus_dir, "test")
    seen = {}
    for part, utts in (("train", train), ("test", test)):
        for u in utts:
            if u.utt in seen:
                raise fail(f"utterance id appears in both the {seen[u.utt]} and the {part} part", utt=u.utt)
            seen[u.utt] = part
    order = {u: i for i, u in enumerate(c_sorted(u.utt for u in train))}
    train.sort(key=lambda u: order[u.utt])
    if len(train) <= NUM_DEV:
        raise AsrktError(f"AN4 training part has {len(train)} utterances, need more than {NUM_DEV} for "
                         "train_dev plus train_nodev")
    test_order = {u: i for i, u in enumerate(c_sorted(u.utt for u in test))}
    test.sort(key=lambda u: test_order[u.utt])
    return {"train_nodev": train[NUM_DEV:], "train_dev": train[:NUM_DEV], "test": test}


def prepare_an4(corpus_dir, data_dir) -> dict[str, dict]:
    """Write ``<data_dir>/{train_nodev,train_dev,test}`` and ``<data_dir>/local/lexicon.txt``; returns per-set
    counts (utts, speakers, words, hours)."""
    sets = load_an4(corpus_dir)
    lexicon = "\n".join(line for line in _read_lines(Path(corpus_dir) / LEXICON) if line.strip()) + "\n"
    target = Path(data_dir) / "local" / "lexicon.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text(encoding="utf-8") != lexicon:
        atomic_write_text(target, lexicon)
    summary = {}
    for name in SETS:
        utts = sets[name]
        replace_data_dir(Path(data_dir) / name,
                         wav_scp={u.utt: str(u.wav) for u in utts},
                         text={u.utt: u.text for u in utts},
                         utt2spk={u.utt: u.spk for u in utts},
                         utt2dur={u.utt: f"{u.duration:.4f}" for u in utts})
        summary[name] = {"utts": len(utts), "speakers": len({u.spk for u in utts}),
                         "words": sum(len(u.text.split()) for u in utts),
                         "hours": round(sum(u.duration for u in utts) / 3600, 4)}
    return summary
