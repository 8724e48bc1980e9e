"""n-gram LM of the hybrid objective: modified Kneser-Ney by hand, ARPA round trip and errors, G.fst (asrkt.hmm.lm)."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from asrkt.hmm.kaldi import kaldifst
from asrkt.hmm.lang import make_lang, read_symbols
from asrkt.hmm.lm import (BOS, EOS, FALLBACK_DISCOUNTS, _discounts, estimate_kn, kn_discounts, make_g_fst, read_arpa,
                          uniform_word_loop)
from asrkt.utils.errors import AsrktError

TOY = [["a", "b"], ["a", "c"], ["b"]]


def test_kn_bigram_by_hand():
    """Bigram interpolated KN on 3 sentences with fixed discounts D1=0.5, D2=1.0, D3+=1.5.

    Padded: <s> a b </s> | <s> a c </s> | <s> b </s>
    Bigram counts (top order: raw): <s>a 2, <s>b 1, ab 1, ac 1, b</s> 2, c</s> 1.
    Unigram counts (continuation: distinct left neighbours): a {<s>} 1, b {a,<s>} 2, c {a} 1, </s> {b,c} 2;
    total 6. Vocabulary for the uniform level: a b c </s> <unk> (5 words).
    gamma() = (0.5*2 [a,c] + 1.0*2 [b,</s>]) / 6 = 0.5, so each word gets 0.5/5 = 0.1 from the uniform level:
      p(a) = p(c) = (1-0.5)/6 + 0.1 = 0.18333..., p(b) = p(</s>) = (2-1)/6 + 0.1 = 0.26666..., p(<unk>) = 0.1
    Context <s>: total 3, gamma(<s>) = (1.0 [<s>a: 2] + 0.5 [<s>b: 1]) / 3 = 0.5
      p(a|<s>) = (2-1)/3 + 0.5*0.18333 = 0.425,  p(b|<s>) = (1-0.5)/3 + 0.5*0.26666 = 0.3
      p(c|<s>) (unseen) = 0.5*0.18333 = 0.091666...
    Context a: total 2, gamma(a) = (0.5+0.5)/2 = 0.5
      p(b|a) = 0.5/2 + 0.5*0.26666 = 0.38333...,  p(c|a) = 0.25 + 0.5*0.18333 = 0.341666...
    Context b: total 2, gamma(b) = 1.0/2 = 0.5;  p(</s>|b) = (2-1)/2 + 0.5*0.26666 = 0.63333...
    Context c: total 1, gamma(c) = 0.5/1 = 0.5;  p(</s>|c) = 0.5/1 + 0.5*0.26666 = 0.63333...
    """
    lm = estimate_kn(TOY, order=2, discounts=(0.5, 1.0, 1.5))

    def p(w, *h):
        return 10 ** lm.logprob(w, h)

    assert p("a") == pytest.approx(0.5 / 6 + 0.1) and p("c") == pytest.approx(0.5 / 6 + 0.1)
    assert p("b") == pytest.approx(1 / 6 + 0.1) and p(EOS) == pytest.approx(1 / 6 + 0.1)
    assert p("<unk>") == pytest.approx(0.1)
    assert p("a", BOS) == pytest.approx(0.425) and p("b", BOS) == pytest.approx(0.3)
    assert p("c", BOS) == pytest.approx(0.5 * (0.5 / 6 + 0.1))
    assert p("b", "a") == pytest.approx(0.25 + 0.5 * (1 / 6 + 0.1))
    assert p("c", "a") == pytest.approx(0.25 + 0.5 * (0.5 / 6 + 0.1))
    assert p(EOS, "b") == pytest.approx(0.5 + 0.5 * (1 / 6 + 0.1))
    assert p(EOS, "c") == pytest.approx(0.5 + 0.5 * (1 / 6 + 0.1))
    assert p("zebra", "a") == pytest.approx(0.5 * 0.1)  # an unknown word scores as <unk>
    # ARPA form: <s> has probability zero and backoff gamma(<s>); backoff weights are the gammas
    assert lm.ngrams[1][(BOS,)] == (-99.0, pytest.approx(math.log10(0.5)))
    assert lm.ngrams[1][("a",)][1] == pytest.approx(math.log10(0.5))
    assert lm.ngrams[1][(EOS,)][1] is None  # never a context
    assert lm.sentence_logprob(["a", "b"]) == pytest.approx(math.log10(0.425 * (0.25 + 0.5 * (1 / 6 + 0.1))
                                                                       * (0.5 + 0.5 * (1 / 6 + 0.1))))


def test_discount_formula_and_fallback():
    # counts-of-counts t1=4, t2=2, t3=1, t4=1: Y = 4/(4+4) = 0.5
    # D1 = 1 - 2*0.5*2/4 = 0.5, D2 = 2 - 3*0.5*1/2 = 1.25, D3+ = 3 - 4*0.5*1/1 = 1.0
    c = Counter({("a",): 1, ("b",): 1, ("c",): 1, ("d",): 1, ("e",): 2, ("f",): 2, ("g",): 3, ("h",): 4})
    assert kn_discounts(c) == pytest.approx((0.5, 1.25, 1.0))
    assert _discounts(c, 1) == pytest.approx((0.5, 1.25, 1.0))
    assert kn_discounts(Counter({("a",): 1})) is None
    assert _discounts(Counter({("a",): 1, ("b",): 2}), 1) == FALLBACK_DISCOUNTS


CORPUS = [s.split() for s in ["a b c", "a b d", "b c d a", "c a b", "a a b c d", "d d", "b", "c a b c d a"] * 3
          + ["e a", "b e"]]


def _contexts(lm):
    return [()] + [g for n in range(1, lm.order) for g in lm.ngrams[n] if g != (EOS,)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_sums_to_one(order, tmp_path):
    lm = estimate_kn(CORPUS, order=order, vocab={"a", "b", "c", "d", "e", "never_seen"})
    assert ("never_seen",) in lm.ngrams[1]  # a vocabulary word gets its uniform share
    for arpa in (lm, read_arpa(lm.write(tmp_path / "lm.arpa"))):
        for h in _contexts(arpa):
            total = sum(10 ** arpa.logprob(w, h) for w in arpa.vocab)
            assert total == pytest.approx(1.0, abs=1e-6), h


def test_oov_words_become_unk():
    lm = estimate_kn([["a", "zz"], ["a", "b"]], order=2, vocab={"a", "b"}, unk="<UNK>")
    assert {g[0] for g in lm.ngrams[1]} == {BOS, EOS, "a", "b", "<UNK>"}
    assert ("a", "<UNK>") in lm.ngrams[2]
    with pytest.raises(AsrktError, match="without <s> </s>"):
        estimate_kn([["<s>", "a"]])


def test_arpa_round_trip(tmp_path):
    lm = estimate_kn(CORPUS, order=3)
    back = read_arpa(lm.write(tmp_path / "lm.arpa"))
    assert back.order == 3
    for n in (1, 2, 3):
        assert back.ngrams[n].keys() == lm.ngrams[n].keys()
        for g, (lp, bow) in lm.ngrams[n].items():
            assert back.ngrams[n][g][0] == pytest.approx(lp, abs=1e-6)
            assert (back.ngrams[n][g][1] is None) == (bow is None)
    text = (tmp_path / "lm.arpa").read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")


GOOD = ("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-99 <s> -0.3\n-0.3 a -0.2\n-0.3 </s>\n\n"
        "\\2-grams:\n-0.1 <s> a\n\n\\end\\\n")


@pytest.mark.parametrize("bad, where, msg", [
    (GOOD.replace("-0.3 a -0.2", "-0.3 a -0.2 x"), ":7:", "expected 'log10prob w1 .. w1"),
    (GOOD.replace("-0.1 <s> a", "oops <s> a"), ":11:", "not a number"),
    (GOOD.replace("ngram 2=1", "ngram 2=2"), ": ", "declares 2 2-grams, the file has 1"),
    (GOOD.replace("\\end\\\n", ""), ":12:", "without \\\\end\\\\"),
    (GOOD.replace("\\data\\\n", ""), ": ", "no \\\\data\\\\ line"),
    (GOOD.replace("\\2-grams:", "\\3-grams:"), ":10:", "out of order"),
    (GOOD.replace("-0.3 a -0.2", "0.5 a -0.2"), ":7:", "not <= 0"),
])
def test_bad_arpa_one_line_error(tmp_path, bad, where, msg):
    read_arpa(_write(tmp_path / "ok.arpa", GOOD))
    path = _write(tmp_path / "bad.arpa", bad)
    with pytest.raises(AsrktError, match=msg) as e:
        read_arpa(path)
    assert str(e.value).startswith(str(path) + where) and "\n" not in str(e.value)


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def lang_dir(tmp_path):
    lex = _write(tmp_path / "lexicon.txt", "A AH\nA(2) EY\nAB AH B\nB B IY\nREAD R EH D\nRED R EH D\n")
    make_lang(lex, tmp_path / "lang")
    return tmp_path / "lang"


def _is_deterministic(fst):
    for s in range(fst.num_states):
        labels = [a.ilabel for a in kaldifst.ArcIterator(fst, s)]
        if 0 in labels or len(labels) != len(set(labels)):
            return False
    return True


def test_g_fst_from_arpa_and_determinizable_lg(lang_dir, tmp_path):
    words = read_symbols(lang_dir / "words.txt")
    vocab = set(words) - {"<eps>", "#0", BOS, EOS}
    lm = estimate_kn([["A", "B"], ["READ", "RED", "A"], ["AB", "B", "ZZ"]], order=3, vocab=vocab, unk="<UNK>")
    g = make_g_fst(lm.write(tmp_path / "lm.arpa"), lang_dir / "words.txt", tmp_path / "G.fst")
    g2 = kaldifst.StdVectorFst.read(str(tmp_path / "G.fst"))
    assert g2.num_states == g.num_states > 1 and g2.is_ilabel_sorted
    labels = {(a.ilabel, a.olabel) for s in range(g.num_states) for a in kaldifst.ArcIterator(g, s)}
    assert (words["#0"], 0) in labels  # backoff arcs read #0 and write nothing
    assert not {words[BOS], words[EOS]} & {i for i, _ in labels}  # <s> and </s> became epsilon
    # the best path through G for "A B" costs -ln p(A B) (log10 in ARPA, natural log in the FST)
    ab = kaldifst.compose(kaldifst.make_linear_acceptor([words["A"], words["B"]]), g)
    _, _, _, w = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(ab))
    assert w.value == pytest.approx(-lm.sentence_logprob(["A", "B"]) * math.log(10), abs=1e-3)
    # L_disambig o G determinizes (determinize_star returns False when it completed, True when it gave up)
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L_disambig.fst"))
    lg = kaldifst.compose(L, g)
    assert kaldifst.determinize_star(lg, max_states=100000) is False
    assert _is_deterministic(lg)


def test_g_fst_rejects_words_outside_words_txt(lang_dir, tmp_path):
    lm = estimate_kn([["A", "QQ"]], order=2)
    with pytest.raises(AsrktError, match="2 words of the LM are not in .*words.txt: <unk> QQ"):
        make_g_fst(lm.write(tmp_path / "lm.arpa"), lang_dir / "words.txt", tmp_path / "G.fst")


def test_cli_make_ngram_lm(lang_dir, tmp_path, capsys):
    from asrkt.bin.make_ngram_lm import main

    text = _write(tmp_path / "text", "u1 A B\nu2 READ A\nu3 B ZZ\n")
    out = tmp_path / "lang_test"
    main(["--text", str(text), "--order", "2", str(lang_dir), str(out)])
    assert (out / "G.fst").is_file() and (out / "L_disambig.fst").is_file() and (out / "words.txt").is_file()
    lm = read_arpa(out / "lm.arpa")
    assert lm.order == 2 and ("<UNK>",) in lm.ngrams[1] and ("B", "<UNK>") in lm.ngrams[2]
    mtime = (out / "G.fst").stat().st_mtime_ns
    main(["--text", str(text), "--order", "2", str(lang_dir), str(out)])  # reused
    assert (out / "G.fst").stat().st_mtime_ns == mtime
    bad = _write(tmp_path / "bad.arpa", GOOD.replace("-0.1 <s> a", "-0.1 <s>"))
    with pytest.raises(SystemExit) as e:
        main(["--arpa", str(bad), str(lang_dir), str(tmp_path / "other")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"ERROR: {bad}:11: expected 'log10prob w1 .. w2")
    assert not (tmp_path / "other").exists()


def test_no_lm_word_loop_gives_every_word_the_same_cost(lang_dir, tmp_path):
    words = read_symbols(lang_dir / "words.txt")
    lm = uniform_word_loop(["A", "B", "READ"], unk="<UNK>")
    assert lm.order == 1 and lm.unk is None  # <UNK> is not among the loop's words
    assert lm.logprob("A") == lm.logprob("READ") == lm.logprob(EOS) == pytest.approx(-math.log10(4))
    assert lm.logprob("RED") == -math.inf  # outside the loop
    g = make_g_fst(lm.write(tmp_path / "lm.arpa"), lang_dir / "words.txt", tmp_path / "G.fst")
    assert g.num_states == 1  # kaldilm took the back-off-free unigram ARPA

    def cost(seq):
        path = kaldifst.compose(kaldifst.make_linear_acceptor([words[w] for w in seq]), g)
        return kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(path))[3].value

    # any sentence of n words costs (n + 1) ln 4: the word order carries no information
    assert cost(["A", "B"]) == pytest.approx(cost(["B", "A"])) == pytest.approx(3 * math.log(4), abs=1e-3)
    with pytest.raises(AsrktError, match="at least one word"):
        uniform_word_loop([BOS, EOS])


def test_cli_make_ngram_lm_order_0_is_the_word_loop_of_the_training_text(lang_dir, tmp_path):
    from asrkt.bin.make_ngram_lm import main

    text = _write(tmp_path / "text", "u1 A B\nu2 READ A\n")
    main(["--order", "0", "--text", str(text), str(lang_dir), str(tmp_path / "nolm")])
    lm = read_arpa(tmp_path / "nolm" / "lm.arpa")
    assert sorted(lm.vocab) == sorted(["A", "B", "READ", EOS]) and (tmp_path / "nolm" / "G.fst").is_file()


def test_cli_estimate_lm_from_the_training_text(tmp_path, capsys):
    from asrkt.bin.estimate_lm import main

    text = _write(tmp_path / "text", "u1 A B\nu2 READ A\nu3 A B\n")
    main(["--order", "2", str(text), str(tmp_path / "lm.arpa")])
    lm = read_arpa(tmp_path / "lm.arpa")
    assert lm.order == 2 and {"A", "B", "READ"} <= set(lm.vocab)
    assert lm.logprob("B", ["A"]) > lm.logprob("READ", ["A"])  # "A B" seen twice, "A READ" never
    main(["--order", "0", str(text), str(tmp_path / "loop.arpa")])
    assert sorted(read_arpa(tmp_path / "loop.arpa").vocab) == sorted(["A", "B", "READ", EOS])
    with pytest.raises(SystemExit):
        main([str(_write(tmp_path / "empty", "")), str(tmp_path / "x.arpa")])
    assert "no utterances to estimate an LM from" in capsys.readouterr().err and not (tmp_path / "x.arpa").exists()
