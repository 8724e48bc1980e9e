"""WER/CER scoring: Kaldi's line format, ins/del/sub counts on hand-made examples, missing hypotheses, the CLI."""
from __future__ import annotations

import re

import pytest

from asrkt.bin import score as score_bin
from asrkt.score.wer import (EPS, ErrorCounts, WerResult, compute_wer, kaldi_line, per_utt_lines, ser_line,
                             summary_lines)
from asrkt.utils.errors import AsrktError

# u1: "b" -> "c" substituted, "e" inserted; u2: "y" deleted; u3 correct.
REFS = {"u1": "a b c d", "u2": "x y z", "u3": "p q"}
HYPS = {"u1": "a c c d e", "u2": "x z", "u3": "p q"}


def test_counts_on_hand_example():
    r = compute_wer(REFS, HYPS)
    assert (r.ins, r.dels, r.subs, r.errors, r.words) == (1, 1, 1, 3, 9)
    assert (r.sentences, r.sentence_errors) == (3, 2)
    assert r.wer == pytest.approx(100 * 3 / 9)
    assert r.missing == [] and r.extra == []
    u1, u2, u3 = r.utts
    assert u1.ref == ["a", "b", "c", "d", EPS] and u1.hyp == ["a", "c", "c", "d", "e"]
    assert u1.ops == ["C", "S", "C", "C", "I"]
    assert u2.ops == ["C", "D", "C"] and u2.hyp == ["x", EPS, "z"]
    assert u3.errors == 0


def test_kaldi_line_exact_format():
    r = compute_wer(REFS, HYPS)
    assert kaldi_line(r, "exp/x/decode_test") == "%WER 33.33 [ 3 / 9, 1 ins, 1 del, 1 sub ] exp/x/decode_test"
    assert kaldi_line(r) == "%WER 33.33 [ 3 / 9, 1 ins, 1 del, 1 sub ]"
    assert ser_line(r) == "%SER 66.67 [ 2 / 3 ]"
    # Kaldi's own example from the house conventions, from its counts
    counts = ErrorCounts(ins=43, dels=63, subs=209, ref_len=12533, sentences=1, sentence_errors=1)
    big = WerResult(word=counts, chars=ErrorCounts(), utts=[], missing=[], extra=[])
    assert kaldi_line(big, "exp/.../decode_test") == \
        "%WER 2.51 [ 315 / 12533, 43 ins, 63 del, 209 sub ] exp/.../decode_test"


def test_insertions_can_exceed_100_percent():
    r = compute_wer({"u": "a"}, {"u": "b c d"})
    assert (r.subs, r.ins, r.dels) == (1, 2, 0)
    assert kaldi_line(r) == "%WER 300.00 [ 3 / 1, 2 ins, 0 del, 1 sub ]"


def test_missing_hypothesis_counts_as_deletions_and_is_reported(caplog):
    hyps = {"u1": "a b c d", "zz": "extra words"}  # u2, u3 missing; zz has no reference
    r = compute_wer(REFS, hyps)
    assert r.missing == ["u2", "u3"]
    assert r.extra == ["zz"]
    assert (r.dels, r.ins, r.subs, r.words) == (5, 0, 0, 9)
    lines = summary_lines(r, "L")
    assert lines[0] == "%WER 55.56 [ 5 / 9, 0 ins, 5 del, 0 sub ] L"
    assert lines[-1] == "Scored 3 sentences, 2 not present in hyp."
    assert "2 of 3 reference utterances have no hypothesis" in caplog.text
    assert "(no hypothesis)" in "\n".join(per_utt_lines(r))


def test_cer_counts_space_between_words():
    r = compute_wer({"u": "ab cd"}, {"u": "ab d"})  # 'c' deleted: 1 of 5 characters
    assert (r.chars.dels, r.chars.ins, r.chars.subs, r.chars.ref_len) == (1, 0, 0, 5)
    assert r.cer == pytest.approx(20.0)
    r = compute_wer({"u": "ab cd"}, {"u": "abcd"})  # word boundary lost: one character error, one word sub+del
    assert r.chars.errors == 1 and r.errors == 2
    assert kaldi_line(r, kind="CER") == "%CER 20.00 [ 1 / 5, 0 ins, 1 del, 0 sub ]"


def test_whitespace_is_normalised_and_case_kept():
    r = compute_wer({"u": "  ONE   two "}, {"u": "one two"})
    assert (r.subs, r.words) == (1, 2)
    assert r.chars.subs == 3  # O,N,E vs o,n,e; the spacing differences are not errors


def test_empty_reference_and_empty_hypothesis():
    r = compute_wer({"a": "", "b": "x y"}, {"a": "", "b": ""})
    assert (r.dels, r.ins, r.words, r.sentence_errors) == (2, 0, 2, 1)
    r = compute_wer({"a": ""}, {"a": "x"})
    assert r.ins == 1 and r.wer == float("inf")


def test_no_references_is_an_error():
    with pytest.raises(AsrktError, match="no reference utterances"):
        compute_wer({}, {"u": "a"})


def test_to_dict_numbers():
    d = compute_wer(REFS, HYPS).to_dict()
    assert d["errors"] == 3 and d["words"] == 9 and d["ins"] == 1 and d["del"] == 1 and d["sub"] == 1
    assert d["sentences"] == 3 and d["sentence_errors"] == 2 and d["missing_hyps"] == 0
    assert d["wer"] == pytest.approx(33.3333, abs=1e-4)


def _write(path, table):
    path.write_text("".join(f"{k} {v}\n" if v else f"{k}\n" for k, v in table.items()), encoding="utf-8")


def test_cli_prints_kaldi_lines_and_per_utt(tmp_path, capsys):
    ref, hyp, per_utt = tmp_path / "ref.txt", tmp_path / "hyp.txt", tmp_path / "per_utt.txt"
    _write(ref, REFS)
    _write(hyp, {"u3": "p q", "u1": "a c c d e", "u2": "x z"})  # unsorted hypotheses are fine
    score_bin.main([str(ref), str(hyp), "--label", "exp/x/decode_dev", "--per-utt", str(per_utt)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "%WER 33.33 [ 3 / 9, 1 ins, 1 del, 1 sub ] exp/x/decode_dev"
    assert out[1] == "%SER 66.67 [ 2 / 3 ] exp/x/decode_dev"
    assert re.match(r"^%CER \d+\.\d\d \[ \d+ / \d+, \d+ ins, \d+ del, \d+ sub \] exp/x/decode_dev$", out[2])
    lines = per_utt.read_text().splitlines()
    assert lines[0] == "u1 #err 2 / 4 (ins 1, del 0, sub 1)"
    assert lines[3].split() == ["u1", "op", "C", "S", "C", "C", "I"]
    assert len(lines) == 4 * 3


def test_cli_empty_hypothesis_line(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    _write(ref, {"u1": "a b"})
    _write(hyp, {"u1": ""})
    score_bin.main([str(ref), str(hyp)])
    assert capsys.readouterr().out.splitlines()[0] == "%WER 100.00 [ 2 / 2, 0 ins, 2 del, 0 sub ]"


def test_cli_strict_fails_on_missing_hypothesis(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    _write(ref, REFS)
    _write(hyp, {"u1": "a b c d"})
    with pytest.raises(SystemExit) as e:
        score_bin.main([str(ref), str(hyp), "--strict"])
    assert e.value.code == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("ERROR: ") and str(hyp) in err and "2 reference utterances have no hypothesis" in err


def test_cli_missing_file_is_named(tmp_path, capsys):
    ref = tmp_path / "ref.txt"
    _write(ref, REFS)
    with pytest.raises(SystemExit):
        score_bin.main([str(ref), str(tmp_path / "nope.txt")])
    assert f"{tmp_path / 'nope.txt'}: file not found" in capsys.readouterr().err
