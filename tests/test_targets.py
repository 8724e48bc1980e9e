"""Tokenizers, lang dirs, prepare_lang and the CTC objective."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

from asrkt.bin import prepare_lang
from asrkt.models import LstmConfig, ModelConfig, build_model
from asrkt.targets import CtcObjective, Tokenizer, build_objective, min_ctc_frames, read_tokens, train_tokenizer
from asrkt.utils.errors import AsrktError

TRAIN = ["ONE TWO THREE", "FOUR FIVE SIX", "SEVEN EIGHT NINE ZERO OH", "TWO TWO ONE", "NINE OH FIVE"] * 4


def test_char_tokenizer_lang_dir_and_round_trip(tmp_path):
    tok = train_tokenizer(TRAIN, tmp_path / "lang", kind="char")
    lines = (tmp_path / "lang" / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<blk> 0" and lines[1] == "\u2581 1"
    assert [int(line.split()[1]) for line in lines] == list(range(len(lines)))
    assert sorted(line.split()[0] for line in lines[2:]) == sorted(set("".join(TRAIN)) - {" "})
    assert not (tmp_path / "lang" / "bpe.model").exists()
    info = yaml.safe_load((tmp_path / "lang" / "tokenizer.yaml").read_text())
    assert info["kind"] == "char" and info["num_classes"] == len(lines) == tok.num_classes
    loaded = Tokenizer.load(tmp_path / "lang")
    ids = loaded.encode("  NINE   ONE ")
    assert min(ids) >= 1 and len(ids) == 2 + 4 + 3
    assert [loaded.tokens[i] for i in ids[:3]] == ["\u2581", "N", "I"]
    assert loaded.decode(ids) == "NINE ONE"
    assert loaded.decode([0] + ids + [0]) == "NINE ONE"  # blanks are skipped
    assert loaded.encode("") == []


def test_char_unknown_character_is_named(tmp_path):
    tok = train_tokenizer(TRAIN, tmp_path / "lang", kind="char")
    with pytest.raises(AsrktError, match=r"utterance 'u1': character 'Q' \(U\+0051\) is not in .*tokens.txt"):
        tok.encode("ONE QUEUE", utt="u1")
    with pytest.raises(AsrktError, match="token id 99 out of range"):
        tok.decode([1, 99])


@pytest.mark.parametrize("kind, vocab", [("bpe", 30), ("unigram", 25)])
def test_sentencepiece_tokenizer_round_trip(tmp_path, kind, vocab):
    tok = train_tokenizer(TRAIN, tmp_path / "lang", kind=kind, vocab_size=vocab)
    assert (tmp_path / "lang" / "bpe.model").is_file()
    tokens = read_tokens(tmp_path / "lang" / "tokens.txt")
    assert tokens[:2] == ["<blk>", "<unk>"] and len(tokens) == vocab == tok.num_classes
    loaded = Tokenizer.load(tmp_path / "lang")
    for text in TRAIN[:5] + ["ZERO ONE SEVEN"]:
        ids = loaded.encode(text)
        assert ids and min(ids) >= 1
        assert loaded.decode(ids) == text
    assert 1 in loaded.encode("ONE QQ"), "unseen characters map to <unk> (id 1) for sentencepiece"


def test_sentencepiece_training_is_deterministic(tmp_path):
    train_tokenizer(TRAIN, tmp_path / "a", kind="bpe", vocab_size=30)
    train_tokenizer(TRAIN, tmp_path / "b", kind="bpe", vocab_size=30)
    assert (tmp_path / "a" / "bpe.model").read_bytes() == (tmp_path / "b" / "bpe.model").read_bytes()


def test_tokenizer_training_errors(tmp_path):
    with pytest.raises(AsrktError, match=r"train_text: sentencepiece bpe training failed with vocab size 5000: "
                                         r"Vocabulary size too high"):
        train_tokenizer(TRAIN, tmp_path / "lang", kind="bpe", vocab_size=5000, source="train_text")
    with pytest.raises(AsrktError, match="a vocab size is needed for bpe"):
        train_tokenizer(TRAIN, tmp_path / "lang", kind="bpe")
    with pytest.raises(AsrktError, match="no non-empty transcripts"):
        train_tokenizer(["", "  "], tmp_path / "lang")
    with pytest.raises(AsrktError, match="must not contain the blank symbol <blk>"):
        train_tokenizer(["ONE <blk> TWO"], tmp_path / "lang")
    with pytest.raises(AsrktError, match="kind must be one of char, bpe, unigram"):
        train_tokenizer(TRAIN, tmp_path / "lang", kind="word")


def test_tokenizer_load_errors(tmp_path):
    with pytest.raises(AsrktError, match="tokenizer.yaml: not found; .* is not a complete lang dir"):
        Tokenizer.load(tmp_path / "empty")
    train_tokenizer(TRAIN, tmp_path / "lang", kind="char")
    tokens = tmp_path / "lang" / "tokens.txt"
    tokens.write_text("<blk> 0\nA 2\n", encoding="utf-8")
    with pytest.raises(AsrktError, match=r"tokens.txt:2: ids must run 0, 1, 2, ... in order; expected 1, got 2"):
        Tokenizer.load(tmp_path / "lang")
    tokens.write_text("A 0\n", encoding="utf-8")
    with pytest.raises(AsrktError, match="the first token must be '<blk> 0'"):
        Tokenizer.load(tmp_path / "lang")


def test_retraining_as_char_removes_a_stale_sentencepiece_model(tmp_path):
    train_tokenizer(TRAIN, tmp_path / "lang", kind="bpe", vocab_size=30)
    train_tokenizer(TRAIN, tmp_path / "lang", kind="char")
    assert not (tmp_path / "lang" / "bpe.model").exists()
    assert Tokenizer.load(tmp_path / "lang").kind == "char"


def test_prepare_lang_cli(tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("".join(f"spk-{i:02d} {line}\n" for i, line in enumerate(TRAIN)), encoding="utf-8")
    prepare_lang.main(["--kind", "bpe", "--vocab-size", "30", str(text), str(tmp_path / "lang")])
    tok = Tokenizer.load(tmp_path / "lang")
    assert tok.kind == "bpe" and tok.num_classes == 30
    info = yaml.safe_load((tmp_path / "lang" / "tokenizer.yaml").read_text())
    assert info["num_lines"] == len(TRAIN)  # utterance ids are not part of the training text
    assert "spk" not in "".join(tok.tokens)
    with pytest.raises(SystemExit) as e:
        prepare_lang.main(["--kind", "char", str(tmp_path / "missing"), str(tmp_path / "lang2")])
    assert e.value.code == 1
    assert f"ERROR: {tmp_path / 'missing'}: file not found" in capsys.readouterr().err


def logits_for_path(path, num_classes=5):
    """Logits whose argmax per frame follows ``path``."""
    logits = torch.zeros(len(path), num_classes)
    logits[torch.arange(len(path)), torch.tensor(path)] = 5.0
    return logits


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    a = logits_for_path([1, 1, 0, 1, 2, 2, 0, 0, 3])
    b = logits_for_path([0, 4, 4, 4, 0, 0, 2, 2, 2])
    logits = torch.stack([a, b])
    ctc = CtcObjective()
    assert ctc.greedy_decode(logits, torch.tensor([9, 9])) == [[1, 1, 2, 3], [4, 2]]
    assert ctc.greedy_decode(logits, torch.tensor([4, 1])) == [[1, 1], []]  # frames past the length are ignored


def test_ctc_loss_value_on_a_single_frame():
    logits = torch.randn(1, 1, 5)
    loss = CtcObjective().loss(logits, torch.tensor([1]), [[3]])
    assert loss.item() == pytest.approx(-torch.log_softmax(logits[0, 0], -1)[3].item(), rel=1e-5)


def test_infeasible_targets_are_counted_and_left_out():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5, requires_grad=True)
    lengths = torch.tensor([6, 2, 6])
    targets = [[1, 2], [3, 3], [4]]  # [3, 3] needs 3 frames (blank between repeats), has 2
    assert min_ctc_frames([3, 3]) == 3 and min_ctc_frames([1, 2, 2, 2]) == 6
    ctc = build_objective("ctc")
    loss = ctc.loss(logits, lengths, targets, utt_ids=["a", "b", "c"])
    assert math.isfinite(loss.item())
    assert ctc.last_stats.skipped == 1 and ctc.num_infeasible == 1
    assert ctc.last_stats.utterances == 2 and ctc.last_stats.units == 3 and ctc.last_stats.frames == 12
    expected = ctc.loss(logits[[0, 2]], lengths[[0, 2]], [targets[0], targets[2]])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[1] == 0) and torch.isfinite(logits.grad).all()
    all_bad = ctc.loss(logits, lengths, [[1] * 7, [3, 3], [1] * 7])
    assert all_bad.item() == 0.0 and ctc.num_infeasible == 4
    all_bad.backward()


def test_ctc_target_errors_name_the_utterance():
    ctc = CtcObjective()
    with pytest.raises(AsrktError, match="utterance 'u2': target id 0 is the blank or outside \\[1, 5\\)"):
        ctc.loss(torch.randn(2, 4, 5), torch.tensor([4, 4]), [[1], [0, 2]], utt_ids=["u1", "u2"])
    with pytest.raises(AsrktError, match="batch item 0: target id 5"):
        ctc.loss(torch.randn(1, 4, 5), torch.tensor([4]), [[5]])
    with pytest.raises(AsrktError, match="unknown training objective 'ce'"):
        build_objective("ce")


def test_ctc_overfits_a_toy_batch_with_an_lstm():
    torch.manual_seed(0)
    cfg = ModelConfig(type="lstm", subsampling=2,
                      lstm=LstmConfig(num_layers=1, cells=32, targets_delay=2, dropout=0.0))
    model = build_model(cfg, input_dim=4, num_classes=6)
    feats, lengths = torch.randn(2, 24, 4), torch.tensor([24, 18])
    targets = [[1, 2, 3, 3, 4], [5, 1, 5]]
    ctc = CtcObjective()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(60):
        logits, out_lengths = model(feats, lengths)
        loss = ctc.loss(logits, out_lengths, targets)
        assert math.isfinite(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    assert ctc.greedy_decode(*model(feats, lengths)) == targets


def _text_file(path, lines):
    path.write_text("".join(f"spk-{i:02d} {line}\n" for i, line in enumerate(lines)), encoding="utf-8")
    return path


def test_prepare_lang_refuses_a_lang_dir_of_other_text(tmp_path, capsys):
    """A lang dir left by another training set was silently reused (text_sha1 was stored, never checked)."""
    lang = tmp_path / "lang"
    first = _text_file(tmp_path / "text1", TRAIN)
    prepare_lang.main(["--kind", "char", str(first), str(lang)])
    stamp = (lang / "tokens.txt").stat().st_mtime_ns
    # Same text: reused, not retrained.
    prepare_lang.main(["--kind", "char", str(first), str(lang)])
    assert (lang / "tokens.txt").stat().st_mtime_ns == stamp
    assert "already there, reused" in capsys.readouterr().err
    other = _text_file(tmp_path / "text2", ["ZERO ZERO", "OH OH OH"])
    stored = yaml.safe_load((lang / "tokenizer.yaml").read_text())["text_sha1"]
    with pytest.raises(SystemExit) as e:
        prepare_lang.main(["--kind", "char", str(other), str(lang)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "ERROR" in ln)
    assert f"{lang} holds a tokenizer trained on other text (text_sha1 {stored}) than {other}" in line
    assert "own lang dir" in line and "--overwrite true" in line
    with pytest.raises(SystemExit):
        prepare_lang.main(["--check", "--kind", "char", str(other), str(lang)])
    with pytest.raises(SystemExit):  # same text, other settings
        prepare_lang.main(["--kind", "bpe", "--vocab-size", "30", str(first), str(lang)])
    assert "other settings than asked (kind char instead of bpe, vocab_size 17 instead of 30)" in capsys.readouterr().err
    prepare_lang.main(["--overwrite", "true", "--kind", "char", str(other), str(lang)])
    assert yaml.safe_load((lang / "tokenizer.yaml").read_text())["text_sha1"] != stored


def test_check_tokenizer_text(tmp_path):
    from asrkt.targets.tokenizer import check_tokenizer_text, text_file_hash

    text = _text_file(tmp_path / "text", TRAIN)
    train_tokenizer(TRAIN, tmp_path / "lang", kind="char")
    assert check_tokenizer_text(tmp_path / "lang", text) == text_file_hash(text)
    other = _text_file(tmp_path / "other", TRAIN[:3])
    with pytest.raises(AsrktError, match="trained on other text"):
        check_tokenizer_text(tmp_path / "lang", other)
    with pytest.raises(AsrktError, match="not a complete lang dir"):
        check_tokenizer_text(tmp_path / "nolang", text)


def test_unseen_characters_in_a_dev_text_are_one_warning(tmp_path, caplog):
    """Issue 16: with a sentencepiece tokenizer, characters never seen in training became <unk> targets
    silently; now one warning names the text file, the count, the characters and an utterance."""
    from asrkt.targets.ctc import TokenTargets

    tok = train_tokenizer(TRAIN, tmp_path / "lang", kind="bpe", vocab_size=30)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "text").write_text("a ONE TWO\nb ONE QQ\nc ZERO J\n")
    with caplog.at_level("WARNING"):
        targets = TokenTargets(dev, ["a", "b", "c"], tok)
    assert 1 in targets.targets["b"] and 1 not in targets.targets["a"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{dev / 'text'}: 2 of 3 transcripts hold the characters 'J' 'Q' unknown to the tokenizer" in line
    assert "(e.g. utterance 'b')" in line
