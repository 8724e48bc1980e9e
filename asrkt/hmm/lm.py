"""n-gram language models: interpolated modified Kneser-Ney estimation, ARPA read/write, G.fst through kaldilm.

Why our own estimator: the ``kenlm`` package on PyPI builds only the query code (no ``lmplz``), and nltk's LM
cannot write ARPA. :func:`estimate_kn` follows Chen & Goodman's interpolated modified Kneser-Ney as KenLM's
lmplz and SRILM's ``-kndiscount -interpolate`` do:

* Sentences are ``<s> w1 ... wk </s>``; ``<s>`` is only a context, never predicted.
* Counts: the highest order and n-grams starting with ``<s>`` keep their raw counts; a lower-order n-gram ``g``
  gets its continuation count, the number of distinct words ``v`` with ``v g`` seen.
* Three discounts per order from the counts-of-counts ``t_k`` of that order's (adjusted) counts:
  ``Y = t1 / (t1 + 2 t2)``, ``D_k = k - (k + 1) Y t_{k+1} / t_k`` for k = 1, 2, and 3+. When they are undefined
  or outside ``(0, k]`` (tiny corpora), the fallback ``(0.5, 1.0, 1.5)`` is used with a warning (KenLM's
  ``--discount_fallback``); ``discounts=`` fixes them for every order.
* ``p(w | h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w | h')`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_v a(hv)``, h' = h without its first word; the unigram
  level interpolates with the uniform distribution over the vocabulary (every word but ``<s>``, with ``</s>``
  and the unknown word). In ARPA form the backoff weight of h is gamma(h) and each listed probability is the
  interpolated one, so ARPA backoff gives the interpolated model exactly.
* ``vocab``: words outside it are mapped to the unknown word before counting, and every word of it is in the
  unigram list (unseen ones get their uniform share only), so a decoder can still output lexicon words that the
  training text lacks.

G.fst: :func:`make_g_fst` checks the ARPA (one-line errors naming file and line), checks that its words are in
words.txt, then calls ``kaldilm.arpa2fst`` with ``#0`` on backoff arcs (``<s>``/``</s>`` become epsilon), as
Kaldi's ``utils/format_lm.sh`` does.
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
LOG10_ZERO = -99.0  # ARPA's "probability zero" (used for <s>)


@dataclass
class ArpaLm:
    """An ARPA back-off model: ``ngrams[n][words] = (log10 prob, log10 backoff or None)``, n = 1..order."""

    order: int
    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float | None]]] = field(default_factory=dict)
    unk: str | None = "<unk>"

    @property
    def vocab(self) -> list[str]:
        """Every unigram except <s> (the words the model predicts)."""
        return [g[0] for g in self.ngrams[1] if g[0] != BOS]

    def logprob(self, word: str, context=()) -> float:
        """log10 p(word | context) with ARPA back-off; a word outside the unigrams is scored as the unk word."""
        if (word,) not in self.ngrams[1]:
            if self.unk is None or (self.unk,) not in self.ngrams[1]:
                return -math.inf
            word = self.unk
        h = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        bow = 0.0
        while True:
            entry = self.ngrams[len(h) + 1].get(h + (word,))
            if entry is not None:
                return bow + entry[0]
            ctx = self.ngrams[len(h)].get(h) if h else None
            if ctx is not None and ctx[1] is not None:
                bow += ctx[1]
            h = h[1:]

    def sentence_logprob(self, words) -> float:
        """log10 p(<s> words </s>)."""
        hist, total = [BOS], 0.0
        for w in list(words) + [EOS]:
            total += self.logprob(w, hist)
            hist.append(w)
        return total

    def write(self, path) -> Path:
        """Write in ARPA format (written to a temporary name, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(self.ngrams[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                for g in sorted(self.ngrams[n]):
                    lp, bow = self.ngrams[n][g]
                    line = f"{lp:.7f}\t{' '.join(g)}"
                    if bow is not None:
                        line += f"\t{bow:.7f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        tmp.replace(path)
        return path


def uniform_word_loop(vocab, unk: str = "<unk>") -> ArpaLm:
    """The "no LM" grammar (order 0, a zerogram): a loop over ``vocab`` in which every word and the sentence end
    are equally likely, so that decoding depends on the acoustics alone within the vocabulary."""
    words = sorted(set(vocab) - {BOS, EOS})
    if not words:
        raise AsrktError("a word loop needs at least one word")
    lp = -math.log10(len(words) + 1)  # the words and </s>
    unigrams = {(w,): (lp, None) for w in words + [EOS]}
    unigrams[(BOS,)] = (LOG10_ZERO, None)  # no back-off weights in the highest order (kaldilm refuses them)
    return ArpaLm(order=1, ngrams={1: unigrams}, unk=unk if unk in words else None)


def lm_from_sentences(sentences, order: int, vocab=None, unk: str = "<unk>") -> ArpaLm:
    """The LM of a recipe: modified Kneser-Ney of ``order`` (>= 1), or for order 0 the "no LM" word loop over the
    words of ``sentences`` (those in ``vocab`` when given)."""
    sentences = [list(s) for s in sentences]
    if order == 0:
        return uniform_word_loop({w for s in sentences for w in s if vocab is None or w in vocab}, unk=unk)
    return estimate_kn(sentences, order=order, vocab=vocab, unk=unk)


# ----------------------------------------------------------------------------------------------- estimation
def _discounts(adjusted: Counter, order: int) -> tuple[float, float, float]:
    t = [sum(1 for c in adjusted.values() if c == k) for k in range(1, 5)]
    try:
        y = t[0] / (t[0] + 2 * t[1])
        d = tuple(k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3))
    except ZeroDivisionError:
        d = None
    if d is None or any(not (0.0 < dk <= k) for k, dk in zip((1, 2, 3), d)):
        logger.warning("order %d: modified Kneser-Ney discounts undefined or out of range (counts-of-counts %s, "
                       "a tiny corpus?): using the fallback %s", order, t, FALLBACK_DISCOUNTS)
        return FALLBACK_DISCOUNTS
    return d


def kn_discounts(adjusted: Counter) -> tuple[float, float, float] | None:
    """The three modified-KN discounts from (adjusted) counts, or None where undefined (for tests and logs)."""
    t = [sum(1 for c in adjusted.values() if c == k) for k in range(1, 5)]
    if t[0] == 0 or t[1] == 0 or t[2] == 0:
        return None
    y = t[0] / (t[0] + 2 * t[1])
    return tuple(k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3))


def estimate_kn(sentences, order: int = 3, vocab=None, unk: str = "<unk>", discounts=None) -> ArpaLm:
    """Interpolated modified Kneser-Ney n-gram model of ``sentences`` (lists of words); see the module docstring.

    ``discounts``: None (estimated per order, with fallback), or (D1, D2, D3+) used for every order.
    """
    if order < 1:
        raise AsrktError(f"n-gram order must be at least 1, got {order}")
    vocab = None if vocab is None else set(vocab) - {BOS, EOS}
    counts = {n: Counter() for n in range(1, order + 1)}
    n_sent = 0
    for words in sentences:
        words = list(words)
        if vocab is not None:
            words = [w if w in vocab else unk for w in words]
        bad = {BOS, EOS} & set(words)
        if bad:
            raise AsrktError(f"sentence {n_sent + 1} holds {sorted(bad)[0]}: sentences are given without <s> </s>")
        s = [BOS] + words + [EOS]
        n_sent += 1
        for n in range(1, order + 1):
            for i in range(len(s) - n + 1):
                if n == 1 and i == 0:
                    continue  # <s> is never predicted
                counts[n][tuple(s[i:i + n])] += 1
    if n_sent == 0:
        raise AsrktError("no sentences to estimate an n-gram model from")

    # adjusted counts: raw for the top order and for n-grams starting with <s>, else continuation counts
    adjusted = {order: counts[order]}
    for n in range(order - 1, 0, -1):
        a = Counter()
        for g in counts[n + 1]:
            a[g[1:]] += 1
        for g, c in counts[n].items():
            if g[0] == BOS:
                a[g] = c
        adjusted[n] = a

    disc = {n: (tuple(discounts) if discounts is not None else _discounts(adjusted[n], n))
            for n in range(1, order + 1)}

    def d_of(n, c):
        return disc[n][min(c, 3) - 1]

    lm = ArpaLm(order=order, unk=unk, ngrams={n: {} for n in range(1, order + 1)})
    # unigrams, interpolated with the uniform distribution
    words = {g[0] for g in adjusted[1]} | {EOS, unk} | (vocab or set())
    a1 = adjusted[1]
    total = sum(a1.values())
    gamma0 = sum(d_of(1, c) for c in a1.values()) / total
    probs: dict[int, dict[tuple, float]] = {1: {}}
    for w in words:
        c = a1.get((w,), 0)
        probs[1][(w,)] = (c - d_of(1, c) if c else 0.0) / total + gamma0 / len(words)
    bows: dict[int, dict[tuple, float]] = defaultdict(dict)
    for n in range(2, order + 1):
        by_ctx = defaultdict(list)
        for g, c in adjusted[n].items():
            by_ctx[g[:-1]].append((g[-1], c))
        probs[n] = {}
        for h, ext in by_ctx.items():
            s = sum(c for _, c in ext)
            gamma = sum(d_of(n, c) for _, c in ext) / s
            bows[n - 1][h] = gamma
            for w, c in ext:
                lower = probs[n - 1].get(h[1:] + (w,))
                if lower is None:  # cannot happen for counts from text; guards the invariant
                    raise AssertionError(f"missing lower-order n-gram {h[1:] + (w,)}")
                probs[n][h + (w,)] = (c - d_of(n, c)) / s + gamma * lower
    for n in range(1, order + 1):
        for g, p in probs[n].items():
            bow = bows[n].get(g)
            lm.ngrams[n][g] = (math.log10(p), None if bow is None else math.log10(bow))
    bos_bow = bows[1].get((BOS,))
    lm.ngrams[1][(BOS,)] = (LOG10_ZERO, None if bos_bow is None else math.log10(bos_bow))
    logger.info("estimated a %d-gram modified Kneser-Ney model from %d sentences: %s; discounts %s", order, n_sent,
                ", ".join(f"{len(lm.ngrams[n])} {n}-grams" for n in range(1, order + 1)),
                "; ".join(f"{n}: " + " ".join(f"{d:.3f}" for d in disc[n]) for n in range(1, order + 1)))
    return lm


# ------------------------------------------------------------------------------------------------ ARPA reader
_NGRAM_COUNT = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


def read_arpa(path, unk: str | None = "<unk>") -> ArpaLm:
    """Parse an ARPA file strictly; anything malformed raises one line naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise fail("ARPA file not found", path)
    declared: dict[int, int] = {}
    ngrams: dict[int, dict] = {}
    state, n = "header", 0
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise fail(f"not valid UTF-8 ({e.reason})", path) from None
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if state == "header":
            if line == "\\data\\":
                state = "counts"
            continue
        if state == "end":
            if line:
                raise fail(f"text after \\end\\: '{line[:60]}'", path, line=lineno)
            continue
        if not line:
            continue
        if line == "\\end\\":
            if state != "ngrams":
                raise fail("\\end\\ before any n-gram section", path, line=lineno)
            state = "end"
            continue
        m = _SECTION.match(line)
        if m:
            n = int(m.group(1))
            if n != len(ngrams) + 1 or n not in declared:
                raise fail(f"section \\{n}-grams: out of order or not declared in \\data\\", path, line=lineno)
            ngrams[n] = {}
            state = "ngrams"
            continue
        if state == "counts":
            m = _NGRAM_COUNT.match(line)
            if not m:
                raise fail(f"expected 'ngram N=count' in the \\data\\ section, got '{line[:60]}'", path, line=lineno)
            declared[int(m.group(1))] = int(m.group(2))
            continue
        fields = line.split()
        if len(fields) not in (n + 1, n + 2):
            raise fail(f"expected 'log10prob w1 .. w{n} [backoff]' in the \\{n}-grams: section, got "
                       f"'{line[:60]}'", path, line=lineno)
        try:
            lp = float(fields[0])
            bow = float(fields[n + 1]) if len(fields) == n + 2 else None
        except ValueError:
            raise fail(f"not a number in '{line[:60]}'", path, line=lineno) from None
        if lp > 0 or math.isnan(lp):
            raise fail(f"log10 probability {fields[0]} is not <= 0", path, line=lineno)
        ngrams[n][tuple(fields[1:n + 1])] = (lp, bow)
    if state == "header":
        raise fail("no \\data\\ line: not an ARPA file", path)
    if state != "end":
        raise fail("the file ends without \\end\\ (truncated?)", path, line=len(lines))
    for k, cnt in declared.items():
        got = len(ngrams.get(k, {}))
        if got != cnt:
            raise fail(f"\\data\\ declares {cnt} {k}-grams, the file has {got}", path)
    order = max(ngrams)
    if (BOS,) not in ngrams[1] or (EOS,) not in ngrams[1]:
        raise fail(f"the unigrams lack {BOS} or {EOS}", path)
    return ArpaLm(order=order, ngrams=ngrams, unk=unk)


# ---------------------------------------------------------------------------------------------------- G.fst
def check_lm_words(lm: ArpaLm, words, arpa_path, words_txt) -> None:
    """Raise listing the LM's words that ``words`` (words.txt's symbols) lacks: arpa2fst would drop them."""
    missing = sorted(w for w in lm.vocab if w not in words)
    if missing:
        raise fail(f"{len(missing)} words of the LM are not in {words_txt}: {' '.join(missing[:20])}"
                   f"{' ...' if len(missing) > 20 else ''} (the lang dir's lexicon must cover the LM vocabulary; "
                   "was the LM estimated with this lang's words and OOV word?)", arpa_path)


def make_g_fst(arpa_path, words_txt, g_path, disambig_symbol: str = "#0"):
    """G.fst from an ARPA file with kaldilm.arpa2fst (ilabel-sorted, ``#0`` on backoff arcs, <s>/</s> -> eps).

    The ARPA is parsed first so that a malformed file is a one-line error naming the line; words it holds that
    words.txt lacks are an error too (arpa2fst would silently drop their n-grams). Returns the FST (kaldifst).
    """
    from asrkt.hmm.kaldi import kaldifst, kaldilm
    from asrkt.hmm.lang import read_symbols

    lm = read_arpa(arpa_path)
    words = read_symbols(words_txt)
    for sym in (disambig_symbol, BOS, EOS):
        if sym not in words:
            raise fail(f"'{sym}' is missing (needed for G.fst)", words_txt)
    check_lm_words(lm, words, arpa_path, words_txt)
    g_path = Path(g_path)
    tmp = g_path.with_name(g_path.name + ".tmp")
    kaldilm.arpa2fst(input_arpa=str(arpa_path), output_fst=str(tmp), disambig_symbol=disambig_symbol,
                     read_symbol_table=str(words_txt), ilabel_sort=True, max_arpa_warnings=-1)
    g = kaldifst.StdVectorFst.read(str(tmp))
    if g is None or g.num_states == 0:
        raise fail("kaldilm.arpa2fst produced an empty G", arpa_path)
    tmp.replace(g_path)
    logger.info("%s: G.fst with %d states from %s", g_path, g.num_states, arpa_path)
    return g
