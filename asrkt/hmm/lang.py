"""Kaldi's ``data/lang`` from a pronunciation lexicon: phone and word tables, L.fst, L_disambig.fst, topology.

What :func:`make_lang` writes (the layout of Kaldi's ``utils/prepare_lang.sh``)::

    phones.txt  words.txt  oov.txt oov.int  topo  L.fst  L_disambig.fst  lang_info.yaml
    lexicon.txt  lexiconp.txt  lexiconp_disambig.txt
    phones/{silence,nonsilence,optional_silence,disambig,context_indep,sets}.{txt,int,csl}
    phones/roots.txt  phones/wdisambig.txt  phones/wdisambig_{phones,words}.int

Choices (and how they differ from Kaldi's default):

* **Lexicon format**: ``WORD PH1 PH2 ...`` (Kaldi's lexicon.txt and CMU's format). CMU-style alternates
  ``WORD(2) ...`` are pronunciation variants of ``WORD`` (AN4's etc/an4.dic has them); lines starting with
  ``;;;`` are comments. A word listed twice with the same pronunciation keeps one copy.
* **Phones are word-position independent** (no ``_B _I _E _S`` suffixes, Kaldi's ``--position-dependent-phones
  false``): the monophone system does not need them, and the tree-building step can add them later.
* **Silence**: ``SIL`` is the optional silence between words (probability ``sil_prob``, 0.5 as in Kaldi) and
  at both ends of an utterance; it gets the 5-state silence topology, every other phone the 3-state
  left-to-right one.
* **Unknown words**: the lexicon gains ``<UNK> SPN`` unless it already has ``<UNK>``; ``SPN`` (spoken noise) is a
  silence phone, as in Kaldi's recipes. ``oov.txt`` names ``<UNK>``. No ``<SPOKEN_NOISE>`` and no ``!SIL`` word:
  silence is optional in L, so a word for it is not needed.
* **Words in training transcripts that the lexicon lacks** are an error listing each word with one utterance
  (:func:`check_text_words`); ``allow_oov`` maps them to ``<UNK>`` instead, with a warning.
* **Disambiguation** as Kaldi's ``add_lex_disambig.pl``: a pronunciation that is a homophone of another or a
  prefix of another gets ``#1``, ``#2``, ...; ``#0`` is kept for the LM's backoff arcs; one more symbol follows
  optional silence in L_disambig (Kaldi's ``--sil-disambig``); L_disambig has ``#0:#0`` self-loops
  (Kaldi's ``fstaddselfloops``) so that G's ``#0`` passes through L.

The FSTs are built with kaldifst (OpenFst), through :mod:`asrkt.hmm.kaldi`; the topology is read back with
kaldi_hmm_gmm's ``HmmTopology`` as a check.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.tables import read_table

logger = logging.getLogger(__name__)

EPS = "<eps>"
BOS, EOS = "<s>", "</s>"
WORD_DISAMBIG = "#0"
RESERVED_WORDS = (EPS, WORD_DISAMBIG, BOS, EOS)
_VARIANT = re.compile(r"^(.+)\((\d+)\)$")


# --------------------------------------------------------------------------------------------------- lexicon
@dataclass
class Lexicon:
    """word -> pronunciations (tuples of phones), in the order first seen in the file."""

    prons: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    def add(self, word: str, pron) -> bool:
        """Add a pronunciation; False if the word already had it."""
        pron = tuple(pron)
        lst = self.prons.setdefault(word, [])
        if pron in lst:
            return False
        lst.append(pron)
        return True

    def entries(self):
        """(word, pron) for every pronunciation, words C-sorted, variants in file order."""
        for w in sorted(self.prons):
            for p in self.prons[w]:
                yield w, p

    @property
    def words(self) -> list[str]:
        return sorted(self.prons)

    @property
    def phones(self) -> set[str]:
        return {ph for prons in self.prons.values() for p in prons for ph in p}

    def __len__(self) -> int:
        return sum(len(v) for v in self.prons.values())


def read_lexicon(path) -> Lexicon:
    """Read ``WORD PH1 PH2 ...`` lines; ``WORD(N)`` is a variant of ``WORD``; ``;;;`` lines are comments."""
    lex = Lexicon()
    dups = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";;;"):
                continue
            word, pron = fields[0], fields[1:]
            m = _VARIANT.match(word)
            if m:
                word = m.group(1)
            if not pron:
                raise fail(f"word '{fields[0]}' has no pronunciation (expected 'WORD PH1 PH2 ...')", path, line=n)
            if word in RESERVED_WORDS:
                raise fail(f"'{word}' is a reserved symbol and cannot be a lexicon word", path, line=n)
            bad = [p for p in pron if p.startswith("#") or p == EPS]
            if bad:
                raise fail(f"phone '{bad[0]}' is reserved (#N are disambiguation symbols, {EPS} is epsilon)",
                           path, line=n)
            if not lex.add(word, pron):
                dups += 1
    if not lex.prons:
        raise fail("no pronunciations in the lexicon", path)
    if dups:
        logger.info("%s: %d repeated pronunciations kept once", path, dups)
    return lex


# --------------------------------------------------------------------------------------------------- checks
def find_missing_words(text: dict[str, str], words) -> dict[str, tuple[int, str]]:
    """Words of a Kaldi ``text`` table (utt -> transcript) not in ``words``: word -> (count, first utterance)."""
    words = set(words)
    missing: dict[str, list] = {}
    for utt in sorted(text):
        for w in text[utt].split():
            if w not in words:
                if w in missing:
                    missing[w][0] += 1
                else:
                    missing[w] = [1, utt]
    return {w: (c, u) for w, (c, u) in missing.items()}


def check_text_words(text: dict[str, str], words, path="text", oov_word: str | None = None) -> int:
    """Raise an AsrktError listing each transcript word missing from ``words`` with an utterance using it.

    With ``oov_word`` (e.g. ``<UNK>``) missing words are allowed (they will be mapped to it, see
    :func:`map_words`); a warning lists them instead. Returns the number of missing tokens.
    """
    missing = find_missing_words(text, words)
    if not missing:
        return 0
    total = sum(c for c, _ in missing.values())
    listing = ", ".join(f"{w} (x{c}, e.g. utterance {u})" for w, (c, u) in
                        sorted(missing.items(), key=lambda kv: (-kv[1][0], kv[0]))[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    if oov_word is None:
        raise fail(f"{len(missing)} words ({total} tokens) are not in the lexicon: {listing}{more}; add them to "
                   "the lexicon, or allow them to map to the OOV word (prepare_lang_hmm --allow-oov true)", path)
    logger.warning("%s: %d words (%d tokens) not in the lexicon are mapped to %s: %s%s", path, len(missing),
                   total, oov_word, listing, more)
    return total


def map_words(words, vocab, oov_word: str | None = None, where: str = "") -> list[str]:
    """Map words outside ``vocab`` to ``oov_word``; without one, raise naming the first unknown word."""
    out = []
    for w in words:
        if w in vocab:
            out.append(w)
        elif oov_word is not None:
            out.append(oov_word)
        else:
            raise AsrktError(f"{where + ': ' if where else ''}word '{w}' is not in the word list")
    return out


# ------------------------------------------------------------------------------------------- disambiguation
def add_lex_disambig(entries) -> tuple[list[tuple[str, tuple[str, ...], int]], int]:
    """Kaldi's add_lex_disambig.pl: (word, pron) -> (word, pron, k) with disambiguation symbol ``#k`` (0: none).

    A pronunciation gets ``#1``, ``#2``, ... when another entry has the same phones (homophones: each copy a
    different number) or when it is a proper prefix of another entry's phones. Returns the entries and the
    largest k used (0 if none).
    """
    entries = list(entries)
    count = Counter(p for _, p in entries)
    prefixes = {p[:i] for _, p in entries for i in range(1, len(p))}
    last: dict[tuple, int] = defaultdict(int)
    out, max_k = [], 0
    for w, p in entries:
        if count[p] == 1 and p not in prefixes:
            out.append((w, p, 0))
            continue
        last[p] += 1
        max_k = max(max_k, last[p])
        out.append((w, p, last[p]))
    return out, max_k


# ----------------------------------------------------------------------------------------------- lang dir
@dataclass
class LangOptions:
    sil_phone: str = "SIL"  # optional silence between words
    oov_word: str = "<UNK>"  # words.txt's unknown word, pronounced oov_phone
    oov_phone: str = "SPN"  # spoken noise; a silence phone
    sil_prob: float = 0.5  # probability of optional silence after each word (and at the start)
    num_sil_states: int = 5
    num_nonsil_states: int = 3


@dataclass
class Lang:
    """The in-memory lang: tables and phone sets (ids as in phones.txt / words.txt)."""

    phone2id: dict[str, int]
    word2id: dict[str, int]
    silence: list[str]
    nonsilence: list[str]
    optional_silence: str
    disambig: list[str]  # #0 .. #N
    sil_disambig: str  # the one after optional silence in L_disambig
    oov_word: str
    entries: list[tuple[str, tuple[str, ...], int]]  # (word, pron, disambig k)

    @property
    def disambig_ids(self) -> list[int]:
        return [self.phone2id[p] for p in self.disambig]

    @property
    def word_disambig_id(self) -> int:
        return self.word2id[WORD_DISAMBIG]


def build_lang(lexicon: Lexicon, opts: LangOptions = LangOptions()) -> Lang:
    """Phone and word tables, phone sets and disambiguated entries for ``lexicon`` (which is not modified)."""
    lex = Lexicon({w: list(p) for w, p in lexicon.prons.items()})
    if opts.oov_word and opts.oov_word not in lex.prons:
        lex.add(opts.oov_word, [opts.oov_phone])
    silence = [opts.sil_phone] + ([opts.oov_phone] if opts.oov_phone and opts.oov_phone != opts.sil_phone else [])
    nonsilence = sorted(lex.phones - set(silence))
    if not nonsilence:
        raise AsrktError("the lexicon has no non-silence phones")
    entries, max_k = add_lex_disambig(lex.entries())
    n_disambig = max_k + 1  # one more for optional silence in L_disambig (Kaldi's --sil-disambig)
    disambig = [f"#{k}" for k in range(n_disambig + 1)]
    phone2id = {p: i for i, p in enumerate([EPS] + silence + nonsilence + disambig)}
    word2id = {w: i for i, w in enumerate([EPS] + lex.words + [WORD_DISAMBIG, BOS, EOS])}
    return Lang(phone2id=phone2id, word2id=word2id, silence=silence, nonsilence=nonsilence,
                optional_silence=opts.sil_phone, disambig=disambig, sil_disambig=f"#{n_disambig}",
                oov_word=opts.oov_word, entries=entries)


def make_lexicon_fst(lang: Lang, sil_prob: float = 0.5, disambig: bool = False):
    """L (phones -> words) with optional silence, as Kaldi's make_lexicon_fst.py; ``disambig`` gives L_disambig.

    States: 0 start, 1 loop (final), 2 after optional silence (3: before the silence disambiguation symbol).
    Start -> loop (no silence, cost -log(1-p)) or -> silence (cost -log p); a word's phones leave the loop state,
    the first arc carries the word, the last one returns to the loop (-log(1-p)) or goes to silence (-log p).
    L is olabel-sorted (ready to compose with G on the right).
    """
    from asrkt.hmm.kaldi import kaldifst

    if not 0.0 < sil_prob < 1.0:
        raise AsrktError(f"sil_prob must be in (0, 1), got {sil_prob}")
    sil_cost, nosil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
    ph, wd = lang.phone2id, lang.word2id
    fst = kaldifst.StdVectorFst()
    start, loop, sil = fst.add_state(), fst.add_state(), fst.add_state()
    fst.start = start
    fst.set_final(loop, 0.0)
    fst.add_arc(start, kaldifst.StdArc(0, 0, nosil_cost, loop))
    fst.add_arc(start, kaldifst.StdArc(0, 0, sil_cost, sil))
    if disambig:
        sil_dis = fst.add_state()
        fst.add_arc(sil, kaldifst.StdArc(ph[lang.optional_silence], 0, 0.0, sil_dis))
        fst.add_arc(sil_dis, kaldifst.StdArc(ph[lang.sil_disambig], 0, 0.0, loop))
    else:
        fst.add_arc(sil, kaldifst.StdArc(ph[lang.optional_silence], 0, 0.0, loop))
    for word, pron, k in lang.entries:
        phones = list(pron) + ([f"#{k}"] if disambig and k else [])
        cur = loop
        for i, p in enumerate(phones[:-1]):
            nxt = fst.add_state()
            fst.add_arc(cur, kaldifst.StdArc(ph[p], wd[word] if i == 0 else 0, 0.0, nxt))
            cur = nxt
        olabel = wd[word] if len(phones) == 1 else 0
        fst.add_arc(cur, kaldifst.StdArc(ph[phones[-1]], olabel, nosil_cost, loop))
        fst.add_arc(cur, kaldifst.StdArc(ph[phones[-1]], olabel, sil_cost, sil))
    if disambig:
        kaldifst.add_self_loops(fst, [ph[lang.disambig[0]]], [wd[WORD_DISAMBIG]])
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def topology_text(nonsil_ids, sil_ids, num_nonsil_states: int = 3, num_sil_states: int = 5) -> str:
    """Kaldi's HMM topology in text form (as utils/gen_topo.pl): left-to-right for non-silence phones, for
    silence a first state into all but the last emitting state, middle states fully connected, last state
    non-skippable."""
    if num_nonsil_states < 1 or num_sil_states < 1:
        raise AsrktError("HMMs need at least one emitting state")
    lines = ["<Topology>", "<TopologyEntry>", "<ForPhones>", " ".join(map(str, nonsil_ids)), "</ForPhones>"]
    for s in range(num_nonsil_states):
        lines.append(f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>")
    lines += [f"<State> {num_nonsil_states} </State>", "</TopologyEntry>"]
    lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, sil_ids)), "</ForPhones>"]
    n = num_sil_states
    if n > 1:
        tp = 1.0 / (n - 1)
        lines.append("<State> 0 <PdfClass> 0 " + " ".join(f"<Transition> {t} {tp:g}" for t in range(n - 1))
                     + " </State>")
        for s in range(1, n - 1):
            lines.append(f"<State> {s} <PdfClass> {s} " + " ".join(f"<Transition> {t} {tp:g}" for t in range(1, n))
                         + " </State>")
        lines.append(f"<State> {n - 1} <PdfClass> {n - 1} <Transition> {n - 1} 0.75 <Transition> {n} 0.25 </State>")
    else:
        lines.append("<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>")
    lines += [f"<State> {n} </State>", "</TopologyEntry>", "</Topology>"]
    return "\n".join(lines) + "\n"


def read_topology(text_or_path):
    """kaldi_hmm_gmm's HmmTopology from topology text or a ``topo`` file (its ``read`` takes the text)."""
    from asrkt.hmm.kaldi import khg

    text = text_or_path
    if isinstance(text_or_path, Path) or "<Topology>" not in str(text_or_path):
        text = Path(text_or_path).read_text()
    topo = khg.HmmTopology()
    topo.read(text)
    return topo


def read_symbols(path) -> dict[str, int]:
    """A Kaldi symbol table (``sym id`` per line) as a dict; errors name the file and line."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise fail(f"expected 'symbol id', got '{line.strip()}'", path, line=n)
            if fields[0] in table:
                raise fail(f"symbol '{fields[0]}' appears twice", path, line=n)
            table[fields[0]] = int(fields[1])
    return table


def _write_table(path: Path, table: dict[str, int]) -> None:
    path.write_text("".join(f"{s} {i}\n" for s, i in sorted(table.items(), key=lambda kv: kv[1])))


def _write_set(d: Path, name: str, phones, phone2id) -> None:
    phones = list(phones)
    (d / f"{name}.txt").write_text("".join(f"{p}\n" for p in phones))
    (d / f"{name}.int").write_text("".join(f"{phone2id[p]}\n" for p in phones))
    (d / f"{name}.csl").write_text(":".join(str(phone2id[p]) for p in phones) + "\n")


def sha1_of(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def write_lang(lang: Lang, lang_dir, opts: LangOptions = LangOptions(), info: dict | None = None) -> Path:
    """Write every file of a Kaldi lang dir (see the module docstring) into ``lang_dir``.

    Written into ``<lang_dir>.tmp`` and renamed when complete; an existing ``lang_dir`` is replaced.
    """
    lang_dir = Path(lang_dir)
    tmp = lang_dir.with_name(lang_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "phones").mkdir(parents=True)
    ph = lang.phone2id
    _write_table(tmp / "phones.txt", ph)
    _write_table(tmp / "words.txt", lang.word2id)
    (tmp / "oov.txt").write_text(f"{lang.oov_word}\n")
    (tmp / "oov.int").write_text(f"{lang.word2id[lang.oov_word]}\n")
    (tmp / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p, _ in lang.entries))
    (tmp / "lexiconp.txt").write_text("".join(f"{w} 1.0 {' '.join(p)}\n" for w, p, _ in lang.entries))
    (tmp / "lexiconp_disambig.txt").write_text("".join(
        f"{w} 1.0 {' '.join(p)}{f' #{k}' if k else ''}\n" for w, p, k in lang.entries))
    d = tmp / "phones"
    _write_set(d, "silence", lang.silence, ph)
    _write_set(d, "nonsilence", lang.nonsilence, ph)
    _write_set(d, "optional_silence", [lang.optional_silence], ph)
    _write_set(d, "disambig", lang.disambig, ph)
    _write_set(d, "context_indep", lang.silence, ph)
    _write_set(d, "sets", lang.silence + lang.nonsilence, ph)
    (d / "roots.txt").write_text("".join(f"shared split {p}\n" for p in lang.silence + lang.nonsilence))
    (d / "wdisambig.txt").write_text(f"{WORD_DISAMBIG}\n")
    (d / "wdisambig_phones.int").write_text(f"{ph[lang.disambig[0]]}\n")
    (d / "wdisambig_words.int").write_text(f"{lang.word_disambig_id}\n")

    topo = topology_text([ph[p] for p in lang.nonsilence], [ph[p] for p in lang.silence],
                         opts.num_nonsil_states, opts.num_sil_states)
    hmm_topo = read_topology(topo)  # Kaldi's own parser as the check
    expected = sorted(ph[p] for p in lang.silence + lang.nonsilence)
    if sorted(hmm_topo.phones) != expected:
        raise AsrktError(f"HmmTopology read back phones {list(hmm_topo.phones)}, expected {expected}")
    (tmp / "topo").write_text(topo)

    for name, dis in (("L.fst", False), ("L_disambig.fst", True)):
        fst = make_lexicon_fst(lang, opts.sil_prob, disambig=dis)
        if not fst.write(str(tmp / name)):
            raise AsrktError(f"could not write {tmp / name}")
    meta = {"options": asdict(opts), "num_words": len(lang.word2id), "num_phones": len(lang.nonsilence)
            + len(lang.silence), "num_disambig": len(lang.disambig), **(info or {})}
    (tmp / "lang_info.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    if lang_dir.exists():
        shutil.rmtree(lang_dir)
    tmp.rename(lang_dir)
    return lang_dir


def make_lang(lexicon_path, lang_dir, opts: LangOptions = LangOptions(), texts=(), allow_oov: bool = False) -> Lang:
    """Read the lexicon, check that the transcripts ``texts`` (paths of Kaldi text files) are covered, write the
    lang dir. Missing transcript words are an error listing them, unless ``allow_oov`` (mapped to the OOV word)."""
    lexicon = read_lexicon(lexicon_path)
    lang = build_lang(lexicon, opts)
    for t in texts:
        check_text_words(read_table(t), lang.word2id.keys() - set(RESERVED_WORDS), path=t,
                         oov_word=lang.oov_word if allow_oov else None)
    info = {"lexicon": str(Path(lexicon_path).resolve()), "lexicon_sha1": sha1_of(lexicon_path),
            "texts": {str(t): sha1_of(t) for t in texts}, "allow_oov": allow_oov}
    write_lang(lang, lang_dir, opts, info)
    logger.info("%s: %d words (%d pronunciations), %d phones + %d silence, %d disambiguation symbols",
                lang_dir, len(lexicon.prons), len(lang.entries), len(lang.nonsilence), len(lang.silence),
                len(lang.disambig))
    return lang


def load_lang(lang_dir) -> Lang:
    """Read back the tables and phone sets of a lang dir written by :func:`write_lang` (entries included)."""
    d = Path(lang_dir)
    for name in ("phones.txt", "words.txt", "oov.txt", "lexiconp_disambig.txt", "phones/silence.txt"):
        if not (d / name).is_file():
            raise fail(f"not a lang dir: {name} is missing (make it with python -m asrkt.bin.prepare_lang_hmm)", d)
    phone2id, word2id = read_symbols(d / "phones.txt"), read_symbols(d / "words.txt")

    def lines(name):
        return (d / name).read_text().split()

    entries = []
    for line in (d / "lexiconp_disambig.txt").read_text().splitlines():
        f = line.split()
        k = int(f[-1][1:]) if f[-1].startswith("#") else 0
        entries.append((f[0], tuple(f[2:len(f) - (1 if k else 0)]), k))
    disambig = lines("phones/disambig.txt")
    return Lang(phone2id=phone2id, word2id=word2id, silence=lines("phones/silence.txt"),
                nonsilence=lines("phones/nonsilence.txt"), optional_silence=lines("phones/optional_silence.txt")[0],
                disambig=disambig, sil_disambig=disambig[-1], oov_word=lines("oov.txt")[0], entries=entries)
