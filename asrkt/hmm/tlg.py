"""TLG: WFST decoding of CTC models with an n-gram LM, as icefall's HLG and sherpa's TLG decoding do.

The graph (:func:`make_tlg`), with kaldifst (OpenFst):

* **Token lexicon**: every word of the training transcripts spelled by the model's tokenizer
  (:meth:`asrkt.targets.tokenizer.Tokenizer.encode` of the word alone: for ``char``, ``▁`` then its characters;
  for sentencepiece, its pieces, the first one carrying ``▁``). A transcript word the tokenizer cannot spell
  (a character outside tokens.txt, or sentencepiece's ``<unk>``) is an error naming it. The LM's other words
  (e.g. lexicon words a hybrid LM knows that the training text lacks) are spelled too when the tokenizer can;
  those it cannot (e.g. ``<UNK>``) are left out of L with a log line, so G's arcs for them are unreachable.
* **L** (tokens -> words): one loop state, one path per word, the word on its first arc; prefixes get ``#1``,
  ``#2``, ... as Kaldi's add_lex_disambig.pl (:func:`asrkt.hmm.lang.add_lex_disambig`), ``#0:#0`` self-loop for
  G's backoff arcs. No optional silence: CTC's blank plays that part.
* **G** from the ARPA with kaldilm (:func:`asrkt.hmm.lm.make_g_fst`, ``#0`` on backoff arcs).
* ``LG = min(det(L o G))`` (log semiring), then the disambiguation symbols become epsilon (Kaldi's fstrmsymbols).
* **T**, the "standard" CTC topology of k2/icefall: one state per token (the blank's is the start), every state
  final, an arc from every state to every state ``k`` reading token ``k``; it writes ``k`` unless it is the blank
  or a self-loop (a repeat). So ``A A`` in a row is one ``A``, and ``AA`` needs a blank between its letters.
* ``TLG = T o LG``, trimmed, ilabel-sorted.

Label convention: TLG's input label of token id ``t`` (tokens.txt, blank 0) is ``t + 1``, since label 0 is
epsilon; kaldi-decoder's ``DecodableCtc`` reads label ``i`` at column ``i - 1``, so the decoder passes the
(frames x tokens) log-probability matrix as it is. Output labels are words.txt ids.

The decoder (:class:`TlgDecoder`) scores ``acoustic_scale * (log p(token | x) - blank_penalty [blank only])``,
no prior division (CTC outputs are already peaky posteriors), with kaldi-decoder's FasterDecoder (best path;
kaldi-hmm-gmm's lattice decoder wants a transition model, which CTC has not). The acoustic scale is the inverse
LM weight: for CTC log-probs about 1 (icefall's HLG uses LM scales 0.5-1), not the hybrid default 0.1; tune on dev.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

EPS, WORD_DISAMBIG, BOS, EOS = "<eps>", "#0", "<s>", "</s>"
INFO = "tlg_info.yaml"  # written last: its presence means the graph dir is complete


# ------------------------------------------------------------------------------------------- lexicon
def text_words(text_path) -> list[str]:
    """The C-sorted words of a Kaldi ``text`` file (the training transcripts)."""
    from asrkt.utils.tables import c_sorted, read_table

    words = {w for t in read_table(text_path).values() for w in t.split()}
    if not words:
        raise fail("no words in the transcripts", text_path)
    return c_sorted(words)


def spell(tokenizer, word: str) -> tuple[int, ...] | None:
    """Token ids of ``word`` alone, or None when the tokenizer cannot spell it."""
    try:
        ids = tokenizer.encode(word)
    except AsrktError:
        return None
    if not ids or any(tokenizer.tokens[i] == tokenizer.UNK for i in ids):
        return None
    return tuple(ids)


def token_lexicon(tokenizer, words, extra_words=(), where: str = "the training text"):
    """[(word, token ids)] for ``words`` (each must be spellable, else an error naming them) and for the
    spellable ones of ``extra_words``; returns (entries, extra words left out)."""
    entries, bad = {}, []
    for w in words:
        ids = spell(tokenizer, w)
        if ids is None:
            bad.append(w)
        entries[w] = ids
    if bad:
        raise AsrktError(f"{where}: the tokenizer {tokenizer.lang_dir} cannot spell {len(bad)} word(s): "
                         f"{' '.join(bad[:10])}{' ...' if len(bad) > 10 else ''} (a character outside its "
                         "tokens.txt, or <unk>): was it trained on this text?")
    left_out = []
    for w in extra_words:
        if w in entries or w in (BOS, EOS):
            continue
        ids = spell(tokenizer, w)
        if ids is None:
            left_out.append(w)
        else:
            entries[w] = ids
    return sorted(entries.items()), left_out


def make_l_fst(entries, word2id: dict[str, int], first_disambig: int):
    """L_disambig (token ids -> word ids) from ``(word, ids, k)`` entries; ``#k`` has label first_disambig + k."""
    from asrkt.hmm.kaldi import kaldifst

    fst = kaldifst.StdVectorFst()
    loop = fst.add_state()
    fst.start = loop
    fst.set_final(loop, 0.0)
    for word, ids, k in entries:
        labels = list(ids) + ([first_disambig + k] if k else [])
        cur = loop
        for i, lab in enumerate(labels):
            nxt = loop if i == len(labels) - 1 else fst.add_state()
            fst.add_arc(cur, kaldifst.StdArc(lab, word2id[word] if i == 0 else 0, 0.0, nxt))
            cur = nxt
    fst.add_arc(loop, kaldifst.StdArc(first_disambig, word2id[WORD_DISAMBIG], 0.0, loop))  # G's backoff #0
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def make_ctc_topo(num_tokens: int):
    """T: the standard CTC topology over token ids 0..num_tokens-1 (blank 0), input labels shifted by one."""
    from asrkt.hmm.kaldi import kaldifst

    fst = kaldifst.StdVectorFst()
    for _ in range(num_tokens):
        fst.set_final(fst.add_state(), 0.0)
    fst.start = 0
    for i in range(num_tokens):
        for k in range(num_tokens):
            fst.add_arc(i, kaldifst.StdArc(k + 1, 0 if k == 0 or k == i else k, 0.0, k))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


# --------------------------------------------------------------------------------------------- graph
def _arpa_file(arpa) -> Path:
    p = Path(arpa)
    return p / "lm.arpa" if p.is_dir() else p


def tlg_inputs(lang_dir, arpa, text) -> dict:
    """What a graph dir was made from (tlg_info.yaml): paths and hashes of the tokens, the ARPA, the text."""
    from asrkt.hmm.lang import sha1_of

    lang_dir, arpa = Path(lang_dir), _arpa_file(arpa)
    for p in (lang_dir / "tokens.txt", arpa, Path(text)):
        if not p.is_file():
            raise fail("not found", p)
    return {"tokens": str(lang_dir / "tokens.txt"), "tokens_sha1": sha1_of(lang_dir / "tokens.txt"),
            "arpa": str(arpa), "arpa_sha1": sha1_of(arpa), "text": str(text), "text_sha1": sha1_of(text)}


def _write_symbols(path: Path, symbols) -> None:
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)), encoding="utf-8")


def build_tlg(tok, lang_dir, arpa, text, out_dir: Path):
    """Write words.txt, tokens.txt, lexicon.txt and TLG.fst into ``out_dir`` (see the module docstring); ``tok``
    is the tokenizer of ``lang_dir`` (loaded by the caller: asrkt.targets builds on asrkt.hmm, not the reverse)."""
    from asrkt.hmm.graph import replace_ilabels
    from asrkt.hmm.kaldi import kaldifst
    from asrkt.hmm.lang import add_lex_disambig
    from asrkt.hmm.lm import make_g_fst, read_arpa

    t0 = time.time()
    arpa = _arpa_file(arpa)
    words = text_words(text)
    lm_words = read_arpa(arpa).vocab
    entries, left_out = token_lexicon(tok, words, lm_words, where=str(text))
    if left_out:
        logger.info("%d LM word(s) the tokenizer cannot spell are left out of L: %s", len(left_out),
                    " ".join(left_out[:10]))
    not_in_lm = set(words) - set(lm_words)
    if not_in_lm:
        logger.warning("%d transcript word(s) are not in the LM %s and cannot be decoded: %s", len(not_in_lm), arpa,
                       " ".join(sorted(not_in_lm)[:10]))
    symbols = [EPS] + sorted((set(w for w, _ in entries) | set(lm_words)) - {BOS, EOS}) + [WORD_DISAMBIG, BOS, EOS]
    word2id = {w: i for i, w in enumerate(symbols)}
    _write_symbols(out_dir / "words.txt", symbols)
    shutil.copyfile(Path(lang_dir) / "tokens.txt", out_dir / "tokens.txt")

    dis_entries, max_k = add_lex_disambig(entries)
    (out_dir / "lexicon.txt").write_text("".join(f"{w} {' '.join(tok.tokens[i] for i in ids)}\n"
                                                 for w, ids in entries), encoding="utf-8")
    first_disambig = tok.num_classes  # #0 .. #max_k follow the token ids
    L = make_l_fst(dis_entries, word2id, first_disambig)
    G = make_g_fst(arpa, out_dir / "words.txt", out_dir / "G.fst")
    (out_dir / "G.fst").unlink()  # only LG is needed; an LM's G can be large
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    if kaldifst.determinize_star(LG, use_log=True):
        raise AsrktError("determinization of L o G stopped early (max states)")
    kaldifst.minimize_encoded(LG)
    LG = replace_ilabels(LG, range(first_disambig, first_disambig + max_k + 1))
    kaldifst.arcsort(LG, sort_type="ilabel")
    TLG = kaldifst.compose(make_ctc_topo(tok.num_classes), LG)
    kaldifst.connect(TLG)
    if TLG.num_states == 0:
        raise fail("TLG is empty: no transcript word is both spellable and in the LM", arpa)
    kaldifst.arcsort(TLG, sort_type="ilabel")
    if not TLG.write(str(out_dir / "TLG.fst")):
        raise AsrktError(f"could not write {out_dir / 'TLG.fst'}")
    logger.info("TLG: %d states (LG %d) over %d words, %d tokens, %d disambiguation symbols, in %.1fs",
                TLG.num_states, LG.num_states, len(entries), tok.num_classes, max_k + 1, time.time() - t0)
    return TLG


def make_tlg(tokenizer, lang_dir, arpa, text, graph_dir, overwrite: bool = False) -> Path:
    """``graph_dir`` with TLG.fst, words.txt, tokens.txt, lexicon.txt, tlg_info.yaml, built in ``<graph_dir>.tmp``
    and renamed. A complete graph dir made from the same inputs is reused; one from other inputs is refused
    unless ``overwrite``. ``arpa``: an ARPA file, or an LM dir holding lm.arpa (make_ngram_lm's output)."""
    import yaml

    graph_dir = Path(graph_dir)
    wanted = tlg_inputs(lang_dir, arpa, text)
    info_path = graph_dir / INFO
    if info_path.is_file() and not overwrite:
        info = yaml.safe_load(info_path.read_text()) or {}
        changed = [k for k in wanted if k.endswith("_sha1") and info.get(k) != wanted[k]]
        if changed:
            raise fail(f"made from other inputs ({', '.join(changed)} differ): choose another graph dir, or "
                       "remake it with --overwrite true", graph_dir)
        logger.info("%s: TLG already made from these inputs, reused", graph_dir)
        return graph_dir
    tmp = graph_dir.with_name(graph_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    build_tlg(tokenizer, lang_dir, arpa, text, tmp)
    (tmp / INFO).write_text(yaml.safe_dump(wanted, sort_keys=False))
    if graph_dir.exists():
        shutil.rmtree(graph_dir)
    tmp.rename(graph_dir)
    return graph_dir


# ------------------------------------------------------------------------------------------- decoder
class TlgDecoder:
    """CTC log-probs (B, T, C) -> words, best path on ``graph_dir/TLG.fst`` (see the module docstring).

    ``tokens``: the model's token list (its tokenizer's), checked against the graph's tokens.txt."""

    def __init__(self, graph_dir, acoustic_scale: float = 1.0, beam: float = 13.0, max_active: int = 7000,
                 blank_penalty: float = 0.0, tokens: list[str] | None = None):
        from asrkt.hmm.graph import read_fst
        from asrkt.hmm.kaldi import kaldi_decoder
        from asrkt.hmm.lang import read_symbols

        graph_dir = Path(graph_dir)
        if not (graph_dir / INFO).is_file():
            raise fail("not a complete TLG graph dir (make it with python -m asrkt.bin.make_tlg)", graph_dir)
        token_ids = read_symbols(graph_dir / "tokens.txt")
        self.tokens = sorted(token_ids, key=token_ids.get)
        if tokens is not None and list(tokens) != self.tokens:
            raise fail("the graph was built with other tokens than the model's tokenizer: rebuild it with the "
                       "model's lang dir", graph_dir / "tokens.txt")
        if acoustic_scale <= 0:
            raise AsrktError(f"the acoustic scale must be > 0, got {acoustic_scale}")
        if acoustic_scale < 0.3:
            logger.warning("acoustic scale %g: the LM will outweigh CTC's log-probs (the hybrid default 0.1 is an "
                           "LM weight of 10); for TLG about 1 is usual, tune it on dev", acoustic_scale)
        self.id2word = {i: w for w, i in read_symbols(graph_dir / "words.txt").items()}
        self.scale, self.blank_penalty = float(acoustic_scale), float(blank_penalty)
        self.graph = read_fst(graph_dir / "TLG.fst")  # kept alive: the decoder holds a reference to it
        opts = kaldi_decoder.FasterDecoderOptions(beam=beam, max_active=max_active)
        self.decoder = kaldi_decoder.FasterDecoder(self.graph, opts)
        self.graph_dir, self.not_final = graph_dir, 0
        logger.info("TLG decoder: %s, acoustic scale %g, blank penalty %g, beam %g", graph_dir, self.scale,
                    self.blank_penalty, beam)

    def decode_one(self, log_probs: np.ndarray) -> list[int]:
        """Word ids of one utterance's (T, C) log-probs."""
        from asrkt.hmm.kaldi import kaldi_decoder, kaldifst

        m = np.array(log_probs, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != len(self.tokens):
            raise AsrktError(f"expected (frames x {len(self.tokens)}) log-probs for {self.graph_dir}, got {m.shape}")
        if len(m) == 0:
            return []
        m[:, 0] -= self.blank_penalty
        m *= self.scale
        self.decoder.decode(kaldi_decoder.DecodableCtc(np.ascontiguousarray(m)))
        if not self.decoder.reached_final():
            self.not_final += 1  # FasterDecoder then gives the best partial path, as Kaldi's allow_partial
        ok, lat = self.decoder.get_best_path()
        if not ok:
            return []
        _, _, words, _ = kaldifst.get_linear_symbol_sequence(lat)
        return list(words)

    def decode(self, log_probs, lengths) -> list[str]:
        lp = log_probs.detach().float().cpu().numpy() if hasattr(log_probs, "detach") else np.asarray(log_probs)
        return [" ".join(self.id2word[w] for w in self.decode_one(lp[b, :int(n)])) for b, n in enumerate(lengths)]
