"""Output units for CTC: characters, or sentencepiece BPE / unigram pieces, trained on training text only.

A lang dir holds:
  ``tokens.txt``      Kaldi symbol table: ``<blk> 0`` (the CTC blank), then every token with its id >= 1
  ``bpe.model``       the sentencepiece model (kinds ``bpe`` and ``unigram``), whose ids equal ours:
                      ``<blk>`` is its user-defined symbol 0 and ``<unk>`` is 1, as in icefall
  ``tokenizer.yaml``  kind, vocab size, number of classes and the hash of the training text;
                      written last, so a lang dir without it is incomplete

For ``char`` the tokens are ``▁`` (the word boundary, as in sentencepiece) and the characters of the
training text in code-point order; a character unseen in training is an error at encode time (there is
no ``<unk>``). For sentencepiece kinds ``vocab_size`` counts every piece including ``<blk>`` and
``<unk>``, so it equals ``num_classes``.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Iterable

import yaml

from asrkt.utils.atomic import atomic_open, atomic_write_text
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)

BLANK = "<blk>"
UNK = "<unk>"
WORD_BOUNDARY = "\u2581"  # ▁, sentencepiece's word-boundary marker
KINDS = ("char", "bpe", "unigram")
SEED = 1234


def _clean_lines(text_lines: Iterable[str]) -> list[str]:
    """Transcripts as the tokenizer trains on them: whitespace collapsed, empty ones left out."""
    lines = [" ".join(line.split()) for line in text_lines]
    return [line for line in lines if line]


def _text_hash(lines: list[str]) -> str:
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def text_file_hash(text_path) -> str:
    """The ``text_sha1`` a tokenizer trained on the Kaldi ``text`` file ``text_path`` stores."""
    from asrkt.data.kaldi_dir import read_table

    return _text_hash(_clean_lines(read_table(text_path).values()))


def read_tokenizer_info(lang_dir) -> dict:
    """``lang_dir/tokenizer.yaml`` (kind, vocab size, classes, text_sha1); AsrktError if absent or bad."""
    path = Path(lang_dir) / "tokenizer.yaml"
    if not path.is_file():
        raise AsrktError(f"{path}: not found; {lang_dir} is not a complete lang dir (run asrkt.bin.prepare_lang)")
    info = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(info, dict):
        raise AsrktError(f"{path}: expected a mapping (kind, vocab_size, num_classes, text_sha1)")
    return info


def check_tokenizer_text(lang_dir, text_path) -> str:
    """Refuse a lang dir whose tokenizer was trained on other text than the Kaldi ``text`` file ``text_path``
    (e.g. another training set left under the same name); returns the text hash when they agree."""
    info = read_tokenizer_info(lang_dir)
    current = text_file_hash(text_path)
    stored = info.get("text_sha1")
    if stored != current:
        raise AsrktError(
            f"{lang_dir} holds a tokenizer trained on other text (text_sha1 {stored}) than {text_path} "
            f"(text_sha1 {current}): give this training set its own lang dir (kt.sh names it after the training "
            "set and --tag), or retrain it with prepare_lang --overwrite true (and every model trained with it)")
    return current


def _write_tokens(path: Path, tokens: list[str]) -> None:
    with atomic_open(path) as f:
        for i, tok in enumerate(tokens):
            f.write(f"{tok} {i}\n")


def _train_sentencepiece(lines: list[str], kind: str, vocab_size: int, where: str) -> bytes:
    import sentencepiece as spm

    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, model_type=kind, vocab_size=vocab_size,
            character_coverage=1.0, normalization_rule_name="identity",
            # <blk> takes id 0 and <unk> id 1, so sentencepiece ids are the CTC class ids.
            user_defined_symbols=[BLANK], unk_id=1, bos_id=-1, eos_id=-1, pad_id=-1,
            num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    except RuntimeError as e:
        msg = str(e).split("]")[-1].strip() or str(e)
        raise AsrktError(f"{where}: sentencepiece {kind} training failed with vocab size {vocab_size}: "
                         f"{msg}") from None
    return model.getvalue()


def train_tokenizer(text_lines: Iterable[str], lang_dir, kind: str = "char", vocab_size: int | None = None,
                    source: str | None = None) -> "Tokenizer":
    """Train a tokenizer on transcripts (one per item, words only, no utterance ids); write ``lang_dir``.

    ``source`` names the text's origin in error messages. Returns the loaded :class:`Tokenizer`.
    """
    lang_dir = Path(lang_dir)
    where = source or str(lang_dir)
    if kind not in KINDS:
        raise AsrktError(f"{where}: tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    lines = _clean_lines(text_lines)
    if not lines:
        raise AsrktError(f"{where}: no non-empty transcripts to train a tokenizer on")
    for line in lines:
        if BLANK in line:
            raise AsrktError(f"{where}: transcripts must not contain the blank symbol {BLANK}: {line!r}")
    lang_dir.mkdir(parents=True, exist_ok=True)
    if kind == "char":
        chars = sorted(set("".join(lines)) - {" "})
        if WORD_BOUNDARY in chars:
            raise AsrktError(f"{where}: transcripts must not contain the word-boundary mark {WORD_BOUNDARY}")
        if vocab_size is not None:
            logger.info("vocab size %d ignored for char tokens (the training text decides)", vocab_size)
        tokens = [BLANK, WORD_BOUNDARY] + chars
        proto = None
    else:
        if vocab_size is None:
            raise AsrktError(f"{where}: a vocab size is needed for {kind} tokens")
        import sentencepiece as spm

        proto = _train_sentencepiece(lines, kind, vocab_size, where)
        sp = spm.SentencePieceProcessor(model_proto=proto)
        tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    (lang_dir / "tokenizer.yaml").unlink(missing_ok=True)  # marks the dir incomplete while rewriting
    if proto is None:
        (lang_dir / "bpe.model").unlink(missing_ok=True)  # a stale model would contradict tokens.txt
    else:
        with atomic_open(lang_dir / "bpe.model", "wb") as f:
            f.write(proto)
    _write_tokens(lang_dir / "tokens.txt", tokens)
    info = {"kind": kind, "vocab_size": len(tokens) if kind == "char" else vocab_size,
            "num_classes": len(tokens), "blank_id": 0, "text_sha1": _text_hash(lines),
            "num_lines": len(lines)}
    atomic_write_text(lang_dir / "tokenizer.yaml", yaml.safe_dump(info, sort_keys=False))
    logger.info("%s tokenizer: %d classes (incl. blank) from %d transcripts -> %s", kind, len(tokens),
                len(lines), lang_dir)
    return Tokenizer.load(lang_dir)


def read_tokens(path) -> list[str]:
    """Read a Kaldi symbol table whose ids are 0..N-1 with ``<blk>`` at 0; index = id."""
    path = Path(path)
    if not path.is_file():
        raise AsrktError(f"{path}: token table not found")
    tokens = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise AsrktError(f"{path}:{lineno}: expected 'token id', got {line!r}")
        if int(parts[1]) != len(tokens):
            raise AsrktError(f"{path}:{lineno}: ids must run 0, 1, 2, ... in order; expected {len(tokens)}, "
                             f"got {parts[1]}")
        tokens.append(parts[0])
    if not tokens or tokens[0] != BLANK:
        raise AsrktError(f"{path}: the first token must be '{BLANK} 0' (the CTC blank)")
    return tokens


class Tokenizer:
    """Text <-> CTC class ids (0 is the blank and is never produced by ``encode``)."""

    UNK = UNK  # the token of what the tokenizer cannot spell (sentencepiece kinds)

    def __init__(self, lang_dir: Path, kind: str, tokens: list[str], sp=None):
        self.lang_dir = lang_dir
        self.kind = kind
        self.tokens = tokens
        self.blank = 0
        self._sp = sp
        self._ids = {tok: i for i, tok in enumerate(tokens)}

    @property
    def num_classes(self) -> int:
        return len(self.tokens)

    @classmethod
    def load(cls, lang_dir) -> "Tokenizer":
        lang_dir = Path(lang_dir)
        info_path = lang_dir / "tokenizer.yaml"
        info = read_tokenizer_info(lang_dir)
        kind = info.get("kind")
        if kind not in KINDS:
            raise AsrktError(f"{info_path}: unknown tokenizer kind {kind!r}")
        tokens = read_tokens(lang_dir / "tokens.txt")
        if info.get("num_classes") != len(tokens):
            raise AsrktError(f"{lang_dir}/tokens.txt has {len(tokens)} tokens but {info_path} says "
                             f"{info.get('num_classes')}")
        sp = None
        if kind != "char":
            import sentencepiece as spm

            model_path = lang_dir / "bpe.model"
            if not model_path.is_file():
                raise AsrktError(f"{model_path}: sentencepiece model not found")
            sp = spm.SentencePieceProcessor()
            try:
                sp.load(str(model_path))
            except (OSError, RuntimeError) as e:
                raise AsrktError(f"{model_path}: not a sentencepiece model ({e})") from None
            pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
            if pieces != tokens:
                raise AsrktError(f"{model_path} and {lang_dir}/tokens.txt disagree; rerun prepare_lang")
        return cls(lang_dir, kind, tokens, sp)

    def encode(self, text: str, utt: str | None = None) -> list[int]:
        """Class ids (>= 1) of ``text``; ``utt`` only names the utterance in errors."""
        if BLANK in text:
            raise AsrktError(f"{'utterance ' + repr(utt) + ': ' if utt else ''}text contains the blank "
                             f"symbol {BLANK}")
        if self._sp is not None:
            return self._sp.encode(" ".join(text.split()))
        ids = []
        for word in text.split():
            ids.append(self._ids[WORD_BOUNDARY])
            for ch in word:
                i = self._ids.get(ch)
                if i is None or i == 0:
                    raise AsrktError(f"{'utterance ' + repr(utt) + ': ' if utt else ''}character {ch!r} "
                                     f"(U+{ord(ch):04X}) is not in {self.lang_dir}/tokens.txt")
                ids.append(i)
        return ids

    def decode(self, ids) -> str:
        """Text of class ids, words joined by single spaces; blanks (0) are skipped."""
        ids = [int(i) for i in ids if int(i) != self.blank]
        for i in ids:
            if not 0 < i < self.num_classes:
                raise AsrktError(f"token id {i} out of range for {self.lang_dir}/tokens.txt "
                                 f"({self.num_classes} classes)")
        if self._sp is not None:
            text = self._sp.decode(ids)
        else:
            text = "".join(self.tokens[i] for i in ids).replace(WORD_BOUNDARY, " ")
        return " ".join(text.split())

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind}, {self.num_classes} classes, {self.lang_dir})"
