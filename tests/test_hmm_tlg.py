"""TLG decoding of CTC outputs (asrkt.hmm.tlg): a char tokenizer and a bigram LM of a few sentences, synthetic
(frames x tokens) log-probabilities whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_pipeline import direct_outputs, setup  # noqa: F401  (setup: a data dir, char lang, tiny models)

from asrkt.bin import decode as decode_bin
from asrkt.bin.make_tlg import main as make_tlg_main
from asrkt.decode.search import DecodeConfig
from asrkt.hmm.kaldi import kaldifst
from asrkt.hmm.lm import estimate_kn
from asrkt.hmm.tlg import TlgDecoder, make_tlg, spell, token_lexicon
from asrkt.targets import CtcObjective, train_tokenizer
from asrkt.targets.ctc import ctc_best_path
from asrkt.targets.tokenizer import Tokenizer
from asrkt.utils.errors import AsrktError
from asrkt.utils.tables import read_table, write_table

TEXT = {"u1": "A CAT", "u2": "A CAB", "u3": "AA TACO", "u4": "CAT A BAT", "u5": "TACO CAT", "u6": "BAT AA CAB"}
B = "-"  # the blank in frame strings


def make_inputs(root, text=TEXT, kind="char", vocab_size=None):
    write_table(root / "text", text)
    tok = train_tokenizer(text.values(), root / "lang", kind=kind, vocab_size=vocab_size)
    estimate_kn([t.split() for t in text.values()], order=2).write(root / "lm.arpa")
    return tok


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tlg")
    tok = make_inputs(root)
    graph = make_tlg(Tokenizer.load(root / "lang"), root / "lang", root / "lm.arpa", root / "text", root / "graph")
    return root, tok, graph


def frames(tok, symbols, p=0.9, noise=None):
    """(T, C) log-probs: frame t puts ``p`` on symbols[t] ('-' the blank, '_' the word boundary), the rest spread
    evenly; ``noise`` {t: {token: prob}} overrides frames."""
    C = tok.num_classes
    ids = {t: i for i, t in enumerate(tok.tokens)} | {B: 0, "_": tok.tokens.index("\u2581")}
    m = np.full((len(symbols), C), (1 - p) / (C - 1))
    for t, s in enumerate(symbols):
        m[t, ids[s]] = p
    for t, probs in (noise or {}).items():
        rest = (1 - sum(probs.values())) / (C - len(probs))
        m[t] = rest
        for s, q in probs.items():
            m[t, ids[s]] = q
    return np.log(m).astype(np.float32)


def greedy(tok, m):
    return tok.decode(ctc_best_path(torch.from_numpy(m)[None], [len(m)])[0])


def test_clean_paths_decode_to_their_words(built):
    _, tok, graph = built
    dec = TlgDecoder(graph, acoustic_scale=1.0, tokens=tok.tokens)
    for syms, words in ((f"{B}_AA{B}{B}__C{B}ATT{B}", "A CAT"), ("_TTACO__CAT", "TACO CAT"),
                        (f"_BAT{B}_A{B}A_CAB{B}", "BAT AA CAB")):
        m = frames(tok, list(syms))
        assert greedy(tok, m) == words  # the synthetic input is what we think it is
        assert dec.decode(torch.from_numpy(m)[None], [len(m)]) == [words]
    assert dec.not_final == 0


def test_vocabulary_corrects_a_misspelling(built):
    _, tok, graph = built
    # the last frame of "A CAT" prefers O to T: greedy says CAO, not a word; TLG must say CAT
    m = frames(tok, list("_A_CAT"), noise={5: {"O": 0.5, "T": 0.4}})
    assert greedy(tok, m) == "A CAO"
    assert TlgDecoder(graph, acoustic_scale=1.0).decode(m[None], [len(m)]) == ["A CAT"]


def test_repeated_tokens_need_a_blank(built):
    _, tok, graph = built
    dec = TlgDecoder(graph, acoustic_scale=1.0)
    assert dec.decode(frames(tok, list("_AA"))[None], [3]) == ["A"]  # A A in a row is one A under CTC
    assert dec.decode(frames(tok, list(f"_A{B}A"))[None], [4]) == ["AA"]


def test_batch_lengths_and_empty_utterances(built):
    _, tok, graph = built
    dec = TlgDecoder(graph)
    a, b = frames(tok, list("_TACO")), frames(tok, list(f"_A{B}A_CAB"))
    batch = np.zeros((3, len(b), tok.num_classes), dtype=np.float32)
    batch[0, :len(a)], batch[1] = a, b
    assert dec.decode(torch.from_numpy(batch), torch.tensor([len(a), len(b), 0])) == ["TACO", "AA CAB", ""]


def test_blank_penalty_favours_tokens(built):
    _, tok, graph = built
    # the frame between the two A's is blank 0.7, A 0.2: "AA" as is (ln 3.5 = 1.25 nats beats the LM's 0.46 for
    # "A"), "A" once blanks cost 2 more
    m = frames(tok, list("_AAA"), noise={2: {B: 0.7, "A": 0.2}})
    assert TlgDecoder(graph, acoustic_scale=1.0).decode(m[None], [4]) == ["AA"]
    assert TlgDecoder(graph, acoustic_scale=1.0, blank_penalty=2.0).decode(m[None], [4]) == ["A"]


def test_graph_labels_follow_the_decodable_convention(built):
    _, tok, graph = built
    fst = kaldifst.StdVectorFst.read(str(graph / "TLG.fst"))
    ilabels = {a.ilabel for s in range(fst.num_states) for a in kaldifst.ArcIterator(fst, s)}
    # token id t is label t + 1 (blank 1), 0 is epsilon (removed disambiguation symbols); nothing beyond
    assert 1 in ilabels and max(ilabels) <= tok.num_classes and ilabels <= set(range(tok.num_classes + 1))
    lex = dict(line.split(maxsplit=1) for line in (graph / "lexicon.txt").read_text().splitlines())
    assert lex["CAT"] == "\u2581 C A T" and "<unk>" not in lex  # the LM's unknown word cannot be spelled


def test_unspellable_word_is_an_error_naming_it(built, tmp_path):
    root, tok, _ = built
    write_table(tmp_path / "text", dict(TEXT, u7="A DOG"))
    with pytest.raises(AsrktError, match=r"cannot spell 1 word\(s\): DOG"):
        make_tlg(Tokenizer.load(root / "lang"), root / "lang", root / "lm.arpa", tmp_path / "text", tmp_path / "graph")
    assert not (tmp_path / "graph").exists()
    assert spell(tok, "DOG") is None and spell(tok, "CAT") == tuple(tok.encode("CAT"))
    entries, left_out = token_lexicon(tok, ["CAT"], ["A", "DOG", "</s>"])
    assert [w for w, _ in entries] == ["A", "CAT"] and left_out == ["DOG"]


def test_sentencepiece_tokens(tmp_path):
    tok = make_inputs(tmp_path, kind="bpe", vocab_size=14)
    graph = make_tlg(Tokenizer.load(tmp_path / "lang"), tmp_path / "lang", tmp_path / "lm.arpa", tmp_path / "text", tmp_path / "graph")
    dec = TlgDecoder(graph, acoustic_scale=1.0, tokens=tok.tokens)
    for words in ("BAT AA CAB", "TACO CAT"):
        ids = tok.encode(words)
        m = np.full((2 * len(ids), tok.num_classes), np.log(0.1 / (tok.num_classes - 1)), dtype=np.float32)
        for i, t in enumerate(ids):  # each token then a blank
            m[2 * i, t], m[2 * i + 1, 0] = np.log(0.9), np.log(0.9)
        assert dec.decode(m[None], [len(m)]) == [words]


def test_objective_builds_the_tlg_decoder(built, tmp_path):
    root, tok, graph = built
    obj = CtcObjective(root / "lang")
    dec = obj.build_decoder(DecodeConfig(method="tlg", graph=str(graph), acoustic_scale=1.0))
    assert isinstance(dec, TlgDecoder) and dec.scale == 1.0
    with pytest.raises(AsrktError, match="needs the TLG graph dir"):
        obj.build_decoder(DecodeConfig(method="tlg"))
    other = train_tokenizer(["A CAT", "DOG"], tmp_path / "other")
    with pytest.raises(AsrktError, match="other tokens than the model's"):
        CtcObjective(other.lang_dir).build_decoder(DecodeConfig(method="tlg", graph=str(graph)))


def test_cli_reuses_and_refuses(built, tmp_path, capsys):
    root, _, graph = built
    before = (graph / "TLG.fst").stat().st_mtime_ns
    assert make_tlg_main([str(root / "lang"), str(root / "lm.arpa"), str(root / "text"), str(graph)]) == graph
    assert (graph / "TLG.fst").stat().st_mtime_ns == before
    write_table(tmp_path / "text", dict(TEXT, u7="CAT CAT"))
    with pytest.raises(SystemExit):
        make_tlg_main([str(root / "lang"), str(root), str(tmp_path / "text"), str(graph)])  # LM dir form
    assert "text_sha1 differ" in capsys.readouterr().err
    out = make_tlg_main(["--overwrite", "true", str(root / "lang"), str(root), str(tmp_path / "text"),
                         str(tmp_path / "g2")])
    assert (out / "TLG.fst").is_file() and not (tmp_path / "g2.tmp").exists()


def test_decode_cli_with_tlg(setup, tmp_path):  # noqa: F811
    """asrkt.bin.decode --method tlg: batched, padded decoding equals each utterance decoded alone."""
    write_table(tmp_path / "text", setup["text"])
    estimate_kn([t.split() for t in setup["text"].values()], order=2).write(tmp_path / "lm.arpa")
    graph = make_tlg(Tokenizer.load(setup["lang"]), setup["lang"], tmp_path / "lm.arpa", tmp_path / "text", tmp_path / "graph")
    out = tmp_path / "decode"
    for model in ("teacher", "student"):  # the student's outputs are subsampled by 2
        decode_bin.main(["--model", str(setup[model]), "--data-dir", str(setup["data"]), "--lang-dir",
                         str(setup["lang"]), "--out-dir", str(out / model), "--batch-frames", "100",
                         "--method", "tlg", "--graph", str(graph), "--acoustic-scale", "2.0"])
        hyps = read_table(out / model / "hyp.txt")
        assert list(hyps) == sorted(setup["text"])
        dec = TlgDecoder(graph, acoustic_scale=2.0)
        for utt, hyp in hyps.items():
            lp = torch.log_softmax(direct_outputs(setup[model], setup["data"], utt).float(), -1)
            assert hyp == dec.decode(lp[None], [len(lp)])[0]
            assert set(hyp.split()) <= {"ONE", "TWO", "THREE", "FOUR"}
