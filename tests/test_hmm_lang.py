"""Lexicon, lang dir, L.fst and topology of the hybrid (HMM) objective (asrkt.hmm.lang, bin/prepare_lang_hmm)."""
from __future__ import annotations

import math

import pytest

from asrkt.hmm.kaldi import kaldifst, khg
from asrkt.hmm.lang import (
    LangOptions,
    add_lex_disambig,
    build_lang,
    find_missing_words,
    load_lang,
    make_lang,
    read_lexicon,
    read_symbols,
    read_topology,
)
from asrkt.utils.errors import AsrktError

# A tiny lexicon: a variant (A(2)), a prefix (A AH / AB AH B), homophones (READ / RED), a comment line.
LEXICON = """;;; a comment
A AH
A(2) EY
AB AH B
B B IY
READ R EH D
READ(2) R IY D
RED R EH D
A(3) AH
"""


@pytest.fixture
def lex_path(tmp_path):
    p = tmp_path / "lexicon.txt"
    p.write_text(LEXICON)
    return p


@pytest.fixture
def lang_dir(tmp_path, lex_path):
    make_lang(lex_path, tmp_path / "lang")
    return tmp_path / "lang"


def paths(fst):
    """Every complete path of an acyclic FST: (input labels without eps, output labels without eps, cost)."""
    out = []

    def walk(s, il, ol, cost):
        fw = fst.final(s).value
        if fw != math.inf:
            out.append((tuple(il), tuple(ol), cost + fw))
        for a in kaldifst.ArcIterator(fst, s):
            walk(a.nextstate, il + ([a.ilabel] if a.ilabel else []), ol + ([a.olabel] if a.olabel else []),
                 cost + a.weight.value)

    walk(fst.start, [], [], 0.0)
    return out


def test_read_lexicon_variants_and_comments(lex_path):
    lex = read_lexicon(lex_path)
    assert lex.prons["A"] == [("AH",), ("EY",)]  # A(2) is a variant of A; A(3) repeats A's first one
    assert lex.prons["READ"] == [("R", "EH", "D"), ("R", "IY", "D")]
    assert lex.words == ["A", "AB", "B", "READ", "RED"]
    assert len(lex) == 7


@pytest.mark.parametrize("line, msg", [("WORD\n", "no pronunciation"), ("W #1 AH\n", "reserved"),
                                       ("<s> AH\n", "reserved symbol")])
def test_read_lexicon_errors_name_the_line(tmp_path, line, msg):
    p = tmp_path / "lex.txt"
    p.write_text("A AH\n" + line)
    with pytest.raises(AsrktError, match=f"lex.txt:2: .*{msg}"):
        read_lexicon(p)


def test_disambiguation_of_homophones_and_prefixes():
    entries, max_k = add_lex_disambig([("A", ("AH",)), ("AB", ("AH", "B")), ("READ", ("R", "EH", "D")),
                                       ("RED", ("R", "EH", "D")), ("WED", ("W", "EH", "D")),
                                       ("X", ("R", "EH", "D"))])
    assert entries == [("A", ("AH",), 1),  # prefix of AB
                       ("AB", ("AH", "B"), 0),
                       ("READ", ("R", "EH", "D"), 1), ("RED", ("R", "EH", "D"), 2),  # homophones: #1, #2, #3
                       ("WED", ("W", "EH", "D"), 0), ("X", ("R", "EH", "D"), 3)]
    assert max_k == 3


def test_lang_dir_tables_and_files(lang_dir):
    phones = read_symbols(lang_dir / "phones.txt")
    words = read_symbols(lang_dir / "words.txt")
    # <eps>, silence (SIL, SPN), sorted non-silence, then #0 (LM backoff), #1 #2 (lexicon), #3 (after silence)
    assert list(phones) == ["<eps>", "SIL", "SPN", "AH", "B", "D", "EH", "EY", "IY", "R", "#0", "#1", "#2", "#3"]
    assert list(words) == ["<eps>", "<UNK>", "A", "AB", "B", "READ", "RED", "#0", "<s>", "</s>"]
    assert list(phones.values()) == list(range(len(phones)))
    assert (lang_dir / "oov.txt").read_text() == "<UNK>\n"
    assert (lang_dir / "oov.int").read_text() == f"{words['<UNK>']}\n"
    p = lang_dir / "phones"
    assert p.joinpath("silence.txt").read_text().split() == ["SIL", "SPN"]
    assert p.joinpath("optional_silence.txt").read_text().split() == ["SIL"]
    assert p.joinpath("disambig.txt").read_text().split() == ["#0", "#1", "#2", "#3"]
    assert p.joinpath("nonsilence.int").read_text().split() == [str(phones[x]) for x in
                                                               ["AH", "B", "D", "EH", "EY", "IY", "R"]]
    assert p.joinpath("disambig.csl").read_text().strip() == "10:11:12:13"
    assert p.joinpath("wdisambig_words.int").read_text().strip() == str(words["#0"])
    assert "<UNK> SPN" in (lang_dir / "lexicon.txt").read_text().splitlines()
    disamb = (lang_dir / "lexiconp_disambig.txt").read_text().splitlines()
    assert "READ 1.0 R EH D #1" in disamb and "RED 1.0 R EH D #2" in disamb and "A 1.0 AH #1" in disamb
    lang = load_lang(lang_dir)
    assert lang.sil_disambig == "#3" and lang.oov_word == "<UNK>" and len(lang.entries) == 8


def test_topology_loads_in_kaldi(lang_dir):
    phones = read_symbols(lang_dir / "phones.txt")
    topo = read_topology(lang_dir / "topo")
    assert sorted(topo.phones) == list(range(1, 10))
    assert topo.num_pdf_classes(phones["SIL"]) == 5 and topo.num_pdf_classes(phones["SPN"]) == 5
    assert topo.num_pdf_classes(phones["AH"]) == 3 and topo.min_length(phones["AH"]) == 3
    # silence: state 0 cannot skip to the last emitting state, so the shortest path is 0 -> a middle state -> 4
    assert topo.min_length(phones["SIL"]) == 3


def test_l_fst_phone_strings_of_a_word_sequence(lang_dir):
    """L composed with the words 'A B' accepts exactly [SIL] (AH|EY) [SIL] B IY [SIL], with -log 0.5 per choice."""
    phones = read_symbols(lang_dir / "phones.txt")
    words = read_symbols(lang_dir / "words.txt")
    inv = {i: p for p, i in phones.items()}
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L.fst"))
    W = kaldifst.make_linear_acceptor([words["A"], words["B"]])
    got = {}
    for il, ol, cost in paths(kaldifst.compose(L, W)):
        assert ol == (words["A"], words["B"])
        got[" ".join(inv[i] for i in il)] = cost
    sil = ["", "SIL "]
    expected = {f"{s0}{a} {s1}B IY{s2}".strip() for s0 in sil for a in ("AH", "EY") for s1 in sil
                for s2 in ("", " SIL")}
    assert set(got) == expected and len(expected) == 16
    # three binary silence choices (start, after A, after B), each -log 0.5
    assert all(c == pytest.approx(3 * math.log(2), abs=1e-5) for c in got.values())


def test_l_disambig_symbols_and_self_loops(lang_dir):
    phones = read_symbols(lang_dir / "phones.txt")
    words = read_symbols(lang_dir / "words.txt")
    inv = {i: p for p, i in phones.items()}
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L_disambig.fst"))
    got = {" ".join(inv[i] for i in il) for il, _, _ in
           paths(kaldifst.compose(L, kaldifst.make_linear_acceptor([words["RED"]])))}
    # optional silence is always followed by the silence disambiguation symbol #3 (Kaldi's --sil-disambig)
    assert got == {"R EH D #2", "R EH D #2 SIL #3", "SIL #3 R EH D #2", "SIL #3 R EH D #2 SIL #3"}
    loops = [(a.ilabel, a.olabel) for s in range(L.num_states) for a in kaldifst.ArcIterator(L, s)
             if a.nextstate == s and inv[a.ilabel].startswith("#")]
    assert loops == [(phones["#0"], words["#0"])]  # on the loop state, the one final state


def test_training_graph_compiler_accepts_the_lang(lang_dir):
    """The wheel's TrainingGraphCompiler takes our topo and L.fst (the first step of GMM training)."""
    lang = load_lang(lang_dir)
    topo = read_topology(lang_dir / "topo")
    phone_ids = list(topo.phones)
    ctx = khg.monophone_context_dependency(phone_ids, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(ctx, topo)
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L.fst"))
    gc = khg.TrainingGraphCompiler(tm, ctx, L, lang.disambig_ids, khg.TrainingGraphCompilerOptions())
    g = gc.compile_graph_from_text([lang.word2id["A"], lang.word2id["READ"]])
    assert g.num_states > 10
    ok, aligned = kaldifst.equal_align(g, 40, 3, 10)
    assert ok


def test_missing_words_listed_with_an_utterance(tmp_path, lex_path):
    text = tmp_path / "text"
    text.write_text("spk1-u1 A B\nspk1-u2 A ZED\nspk2-u1 ZED YOU ZED\n")
    assert find_missing_words({"u1": "A ZED", "u2": "YOU ZED"}, {"A"}) == {"ZED": (2, "u1"), "YOU": (1, "u2")}
    with pytest.raises(AsrktError) as e:
        make_lang(lex_path, tmp_path / "lang", texts=[text])
    msg = str(e.value)
    assert "2 words (4 tokens) are not in the lexicon" in msg
    assert "ZED (x3, e.g. utterance spk1-u2)" in msg and "YOU (x1, e.g. utterance spk2-u1)" in msg
    assert not (tmp_path / "lang").exists()
    make_lang(lex_path, tmp_path / "lang", texts=[text], allow_oov=True)  # mapped to <UNK> instead
    assert (tmp_path / "lang" / "L.fst").is_file()


def test_cli_errors_and_reuse(tmp_path, lex_path, capsys):
    from asrkt.bin.prepare_lang_hmm import main

    text = tmp_path / "text"
    text.write_text("u1 A XX\n")
    with pytest.raises(SystemExit) as e:
        main(["--text", str(text), str(lex_path), str(tmp_path / "lang")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ERROR: ") and "XX (x1, e.g. utterance u1)" in err
    main(["--text", str(text), "--allow-oov", "true", str(lex_path), str(tmp_path / "lang")])
    mtime = (tmp_path / "lang" / "L.fst").stat().st_mtime_ns
    main(["--text", str(text), "--allow-oov", "true", str(lex_path), str(tmp_path / "lang")])  # reused
    assert (tmp_path / "lang" / "L.fst").stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit):
        main(["--text", str(text), "--allow-oov", "true", "--sil-prob", "0.3", str(lex_path), str(tmp_path / "lang")])
    assert "--overwrite true" in capsys.readouterr().err


def test_an4_lexicon(an4_dir, tmp_path):
    """AN4's etc/an4.dic: variants become one word; every training-transcript word is covered."""
    lex = read_lexicon(an4_dir / "etc" / "an4.dic")
    assert lex.prons["A"] == [("AH",), ("EY",)]
    assert len(lex.prons["FEBRUARY"]) >= 3
    assert not any("(" in w for w in lex.prons)
    text = {}
    for line in (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines():
        words, utt = line.rsplit("(", 1)
        text[utt.rstrip(")").strip()] = " ".join(w for w in words.split() if w not in ("<s>", "</s>"))
    assert find_missing_words(text, lex.prons) == {}
    lang = build_lang(lex, LangOptions())
    assert len(lang.word2id) == len(lex.prons) + 5  # + <eps> <UNK> #0 <s> </s>
    make_lang(an4_dir / "etc" / "an4.dic", tmp_path / "lang")
    assert read_topology(tmp_path / "lang" / "topo").phones
