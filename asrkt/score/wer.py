"""Word and character error rates (jiwer alignments), reported in Kaldi's ``%WER`` form.

Conventions (as Kaldi's ``compute-wer --mode=all``):
- Every reference utterance is scored. A reference without a hypothesis is scored against an empty
  hypothesis (all its words count as deletions) and listed in ``missing``.
- A hypothesis without a reference is not scored; it is listed in ``extra`` (a sign of a wrong ref file).
- Words are whitespace-separated tokens, compared exactly (no case folding, as Kaldi).
- CER is over the characters of the whitespace-normalised text with the space between words counted
  as a symbol (ESPnet's convention), so a missing word boundary is an error.
"""
from __future__ import annotations

import dataclasses
import logging

import jiwer

from asrkt.data.kaldi_dir import c_sorted
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)

EPS = "***"  # Kaldi's symbol for the empty side of an insertion or deletion


@dataclasses.dataclass
class ErrorCounts:
    """Edit-distance counts over a set of utterances (words or characters)."""

    ins: int = 0
    dels: int = 0
    subs: int = 0
    ref_len: int = 0  # reference tokens (words or characters)
    sentences: int = 0
    sentence_errors: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def rate(self) -> float:
        """Error rate in percent (Kaldi's %WER; may exceed 100 with many insertions)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_len

    @property
    def ser(self) -> float:
        return 100.0 * self.sentence_errors / self.sentences if self.sentences else 0.0

    def add(self, ins: int, dels: int, subs: int, ref_len: int) -> None:
        self.ins += ins
        self.dels += dels
        self.subs += subs
        self.ref_len += ref_len
        self.sentences += 1
        self.sentence_errors += int(ins + dels + subs > 0)


@dataclasses.dataclass
class UttAlignment:
    """One utterance's word alignment: ``ops`` is a list of C (correct), S, I, D per aligned position."""

    utt: str
    ref: list[str]  # aligned: EPS where the hypothesis has an insertion
    hyp: list[str]  # aligned: EPS where the hypothesis has a deletion
    ops: list[str]
    missing: bool = False  # no hypothesis was given for this utterance

    @property
    def errors(self) -> int:
        return sum(op != "C" for op in self.ops)

    @property
    def num_ref_words(self) -> int:
        return sum(w != EPS for w in self.ref)

    def count(self, op: str) -> int:
        return sum(o == op for o in self.ops)


@dataclasses.dataclass
class WerResult:
    """Scores of a hypothesis set against its references.

    ``errors, words, ins, dels, subs, sentences, sentence_errors`` are word-level (Kaldi's numbers),
    ``wer``/``ser``/``cer`` percentages, ``chars`` the character-level counts, ``utts`` per-utterance
    alignments in C order, ``missing`` references without a hypothesis, ``extra`` hypotheses without a reference.
    """

    word: ErrorCounts
    chars: ErrorCounts
    utts: list[UttAlignment]
    missing: list[str]
    extra: list[str]

    errors = property(lambda self: self.word.errors)
    words = property(lambda self: self.word.ref_len)
    ins = property(lambda self: self.word.ins)
    dels = property(lambda self: self.word.dels)
    subs = property(lambda self: self.word.subs)
    sentences = property(lambda self: self.word.sentences)
    sentence_errors = property(lambda self: self.word.sentence_errors)
    wer = property(lambda self: self.word.rate)
    ser = property(lambda self: self.word.ser)
    cer = property(lambda self: self.chars.rate)

    def to_dict(self) -> dict:
        """Plain numbers for score.yaml."""
        return {
            "wer": round(self.wer, 4), "cer": round(self.cer, 4), "ser": round(self.ser, 4),
            "errors": self.errors, "words": self.words, "ins": self.ins, "del": self.dels, "sub": self.subs,
            "sentences": self.sentences, "sentence_errors": self.sentence_errors,
            "char_errors": self.chars.errors, "chars": self.chars.ref_len, "char_ins": self.chars.ins,
            "char_del": self.chars.dels, "char_sub": self.chars.subs,
            "missing_hyps": len(self.missing), "extra_hyps": len(self.extra),
        }


def _words(text: str) -> list[str]:
    return text.split()


def _chars(text: str) -> list[str]:
    return list(" ".join(text.split()))


def _align(ref: list[str], hyp: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Aligned ref/hyp token lists (EPS-padded) and the op per position, from jiwer's alignment."""
    if not ref and not hyp:
        return [], [], []
    out = jiwer.process_words([" ".join(ref)], [" ".join(hyp)])
    a_ref, a_hyp, ops = [], [], []
    for chunk in out.alignments[0]:
        r = ref[chunk.ref_start_idx:chunk.ref_end_idx]
        h = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "equal":
            a_ref += r
            a_hyp += h
            ops += ["C"] * len(r)
        elif chunk.type == "substitute":
            a_ref += r
            a_hyp += h
            ops += ["S"] * len(r)
        elif chunk.type == "delete":
            a_ref += r
            a_hyp += [EPS] * len(r)
            ops += ["D"] * len(r)
        elif chunk.type == "insert":
            a_ref += [EPS] * len(h)
            a_hyp += h
            ops += ["I"] * len(h)
        else:  # pragma: no cover - jiwer has only these four
            raise AssertionError(f"unknown jiwer alignment chunk {chunk.type}")
    return a_ref, a_hyp, ops


def _char_counts(ref: str, hyp: str) -> tuple[int, int, int, int]:
    r, h = _chars(ref), _chars(hyp)
    if not r and not h:
        return 0, 0, 0, 0
    # jiwer's word API over space-separated characters; the word-boundary space becomes a "<sp>" token.
    tok = lambda cs: " ".join("<sp>" if c == " " else c for c in cs)  # noqa: E731
    out = jiwer.process_words([tok(r)], [tok(h)])
    return out.insertions, out.deletions, out.substitutions, len(r)


def compute_wer(refs: dict[str, str], hyps: dict[str, str]) -> WerResult:
    """Score ``hyps`` (utt -> text) against ``refs`` (utt -> text); see the module docstring for the rules."""
    if not refs:
        raise AsrktError("no reference utterances to score")
    word, chars = ErrorCounts(), ErrorCounts()
    utts, missing = [], []
    for utt in c_sorted(refs):
        ref_text = refs[utt]
        if utt in hyps:
            hyp_text = hyps[utt]
        else:
            hyp_text = ""
            missing.append(utt)
        ref_w, hyp_w = _words(ref_text), _words(hyp_text)
        a_ref, a_hyp, ops = _align(ref_w, hyp_w)
        word.add(ops.count("I"), ops.count("D"), ops.count("S"), len(ref_w))
        chars.add(*_char_counts(ref_text, hyp_text))
        utts.append(UttAlignment(utt, a_ref, a_hyp, ops, missing=utt not in hyps))
    extra = c_sorted(k for k in hyps if k not in refs)
    if missing:
        logger.warning("%d of %d reference utterances have no hypothesis (scored as deletions), e.g. %s",
                       len(missing), len(refs), ", ".join(missing[:5]))
    if extra:
        logger.warning("%d hypotheses have no reference and are not scored, e.g. %s", len(extra),
                       ", ".join(extra[:5]))
    return WerResult(word=word, chars=chars, utts=utts, missing=missing, extra=extra)


def kaldi_line(result: WerResult, label: str = "", kind: str = "WER") -> str:
    """``%WER 2.51 [ 315 / 12533, 43 ins, 63 del, 209 sub ] label`` (``kind="CER"`` for characters)."""
    c = result.word if kind == "WER" else result.chars
    line = f"%{kind} {c.rate:.2f} [ {c.errors} / {c.ref_len}, {c.ins} ins, {c.dels} del, {c.subs} sub ]"
    return f"{line} {label}" if label else line


def ser_line(result: WerResult, label: str = "") -> str:
    """Kaldi's ``%SER 8.00 [ 4 / 50 ]`` line."""
    line = f"%SER {result.ser:.2f} [ {result.sentence_errors} / {result.sentences} ]"
    return f"{line} {label}" if label else line


def summary_lines(result: WerResult, label: str = "") -> list[str]:
    """The lines of ``wer.txt``: %WER, %SER, %CER and Kaldi's 'Scored N sentences' line."""
    return [kaldi_line(result, label), ser_line(result, label), kaldi_line(result, label, kind="CER"),
            f"Scored {result.sentences} sentences, {len(result.missing)} not present in hyp."]


def per_utt_lines(result: WerResult) -> list[str]:
    """Kaldi-style per-utterance details (as ``wer_per_utt_details.pl``), columns padded to line up.

    ``utt #err E / N (ins I, del D, sub S)``, then ``ref``, ``hyp`` and ``op`` rows of the alignment.
    """
    lines = []
    for u in result.utts:
        widths = [max(len(r), len(h), 1) for r, h in zip(u.ref, u.hyp)]
        row = lambda toks: "  ".join(t.ljust(w) for t, w in zip(toks, widths)).rstrip()  # noqa: E731
        note = " (no hypothesis)" if u.missing else ""
        lines.append(f"{u.utt} #err {u.errors} / {u.num_ref_words} (ins {u.count('I')}, del {u.count('D')}, "
                     f"sub {u.count('S')}){note}")
        lines.append(f"{u.utt} ref  {row(u.ref)}".rstrip())
        lines.append(f"{u.utt} hyp  {row(u.hyp)}".rstrip())
        lines.append(f"{u.utt} op   {row(u.ops)}".rstrip())
    return lines
