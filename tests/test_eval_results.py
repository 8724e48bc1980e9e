"""Result records (record_result) and the RESULTS.md table + bar chart made from them alone (make_results)."""
from __future__ import annotations

import re

import pytest
import yaml

from asrkt.bin import make_results as make_results_bin
from asrkt.bin import record_result as record_bin
from asrkt.data.kaldi_dir import write_data_dir
from asrkt.decode.ctc import DecodeConfig
from asrkt.score.results import family_of, infer_group, load_records, mean_std, render_markdown
from asrkt.utils.config import config_hash, save_config
from asrkt.utils.errors import AsrktError

SUMMARY = ("epoch\tlr\ttrain_loss\ttrain_hard\ttrain_soft\tvalid_loss\tvalid_hard\tvalid_soft\tvalid_ter\t"
           "frames_per_s\tepoch_time_s\tdecision\tbad_batches\n"
           "1\t0.0010\t2.0\t2.0\tnan\t1.9\t1.9\tnan\t60.0\t1000\t12.5\taccepted\t0\n"
           "2\t0.0010\t1.5\t1.5\tnan\t1.95\t1.95\tnan\t58.0\t1000\t20.0\trejected\t0\n")


def score_yaml(wer, cer, errors, words, ins, dels, subs, label):
    return {"model": "exp/x/final.pt", "model_sha1": "ab" * 20, "utts": 10, "decode_time_s": 1.0, "rtf": 0.01,
            "wer": wer, "cer": cer, "errors": errors, "words": words, "ins": ins, "del": dels, "sub": subs,
            "sentences": 10, "sentence_errors": 3,
            "kaldi_line": f"%WER {wer:.2f} [ {errors} / {words}, {ins} ins, {dels} del, {subs} sub ] {label}"}


@pytest.fixture
def recipe(tmp_path):
    """egs/digits with data/train (utt2dur) and a trained, decoded exp/student_kt_ft."""
    r = tmp_path / "egs" / "digits"
    utts = {"s1-a": 1.5, "s1-b": 2.0, "s2-a": 3.7}
    write_data_dir(r / "data" / "train", wav_scp={u: "/dev/null" for u in utts}, text={u: "ONE" for u in utts},
                   utt2spk={u: u.split("-")[0] for u in utts}, utt2dur={u: str(d) for u, d in utts.items()})
    exp = r / "exp" / "student_kt_ft"
    exp.mkdir(parents=True)
    save_config(DecodeConfig(batch_frames=123), exp / "config.yaml")
    (exp / "summary.tsv").write_text(SUMMARY)
    for name, s in (("dev", score_yaml(10.0, 5.0, 10, 100, 1, 2, 7, "exp/student_kt_ft/decode_dev")),
                    ("test", score_yaml(12.5, 6.25, 25, 200, 5, 5, 15, "exp/student_kt_ft/decode_test"))):
        (exp / f"decode_{name}").mkdir()
        (exp / f"decode_{name}" / "score.yaml").write_text(yaml.safe_dump(s))
    return r


def test_record_contents(recipe):
    out = record_bin.main(["--recipe-dir", str(recipe), "--system", "student_kt_ft", "--exp-dir",
                           "exp/student_kt_ft", "--train-dir", "data/train", "--seed", "3",
                           "--command", "./run.sh --stage 6 --seed 3"])
    assert out == recipe / "results" / "student_kt_ft.yaml"
    rec = yaml.safe_load(out.read_text())
    assert rec["system"] == "student_kt_ft" and rec["family"] == "student_kt_ft"
    assert rec["group"] == "lstm_kt_finetune" and rec["corpus"] == "digits" and rec["seed"] == 3
    assert rec["data"] == {"utts": 3, "hours": round(7.2 / 3600, 4), "set": "train"}
    assert rec["config_hash"] == config_hash(DecodeConfig(batch_frames=123))  # same hash as the trainer's
    assert rec["commit"] and isinstance(rec["commit"], str)
    assert rec["results"]["dev"]["wer"] == 10.0 and rec["results"]["test"]["cer"] == 6.25
    assert rec["results"]["test"]["kaldi_line"] == "%WER 12.50 [ 25 / 200, 5 ins, 5 del, 15 sub ] " \
                                                   "exp/student_kt_ft/decode_test"
    assert (rec["results"]["test"]["ins"], rec["results"]["test"]["del"], rec["results"]["test"]["sub"]) == (5, 5, 15)
    assert rec["train_time_s"] == pytest.approx(32.5) and rec["epochs"] == 2  # sum of epoch_time_s
    assert re.match(r"\d{4}-\d\d-\d\dT", rec["date"])
    assert rec["command"] == "./run.sh --stage 6 --seed 3" and rec["exp_dir"] == "exp/student_kt_ft"


def test_record_overrides_and_pretrain_time(recipe):
    pre = recipe / "exp" / "student_kt"
    pre.mkdir()
    (pre / "summary.tsv").write_text(SUMMARY)
    out = record_bin.main(["--recipe-dir", str(recipe), "--system", "kt_seed2", "--exp-dir", "exp/student_kt_ft",
                           "--data-size-utts", "500", "--data-hours", "0.5", "--seed", "2", "--group",
                           "lstm_kt_regularised", "--pretrain-exp-dir", "exp/student_kt"])
    rec = yaml.safe_load(out.read_text())
    assert rec["data"] == {"utts": 500, "hours": 0.5} and rec["group"] == "lstm_kt_regularised"
    assert rec["family"] == "kt" and rec["pretrain_time_s"] == pytest.approx(32.5)
    assert rec["command"].startswith("python -m asrkt.bin.record_result --recipe-dir")  # no replay.sh: this command
    (recipe / "exp" / "student_kt_ft" / "replay.sh").write_text(
        "#!/usr/bin/env bash\n# Replays\ncd /x || exit 1\n[ -f ./path.sh ] && . ./path.sh\n"
        "exec python -m asrkt.bin.train --config conf/finetune.yaml --init-from exp/student_kt/final.pt\n")
    rec = yaml.safe_load(record_bin.main(["--recipe-dir", str(recipe), "--system", "kt_seed2", "--exp-dir",
                                          "exp/student_kt_ft", "--seed", "2"]).read_text())
    assert rec["command"] == "python -m asrkt.bin.train --config conf/finetune.yaml --init-from exp/student_kt/final.pt"
    # the pre-training folder is found from --init-from
    assert rec["pretrain_exp_dir"] == "exp/student_kt" and rec["pretrain_time_s"] == pytest.approx(32.5)


def test_record_without_decodes_is_an_error(recipe, capsys):
    (recipe / "exp" / "bare").mkdir()
    with pytest.raises(SystemExit):
        record_bin.main(["--recipe-dir", str(recipe), "--system", "bare", "--exp-dir", "exp/bare", "--seed", "1"])
    err = capsys.readouterr().err
    assert "ERROR: " in err and "exp/bare: no decode_<set>/score.yaml found" in err


def test_group_and_family_inference():
    assert infer_group("teacher") == "teacher" and infer_group("teacher_seed2") == "teacher"
    assert infer_group("student_scratch") == "lstm_scratch"
    assert infer_group("student_kt_ft_seed3") == "lstm_kt_finetune"
    assert infer_group("student_kt_reg") == "lstm_kt_regularised"
    assert infer_group("whatever") == "other"
    assert family_of("student_kt_ft_seed12") == "student_kt_ft" and family_of("teacher") == "teacher"
    assert mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00" and mean_std([2.5]) == "2.50" and mean_std([]) == "-"


def record(system, seed, dev, test, group=None, cer=1.0, commit="abc123", time_s=600.0):
    rec = {"version": 1, "system": system, "family": family_of(system), "group": group or infer_group(system),
           "corpus": "digits", "data": {"utts": 1000, "hours": 1.25}, "seed": seed, "config_hash": "0123456789ab",
           "commit": commit, "exp_dir": f"exp/{system}", "train_time_s": time_s, "epochs": 5,
           "date": "2026-01-02T03:04:05+00:00", "command": f"./run.sh --seed {seed}", "results": {}}
    for name, wer in (("dev", dev), ("test", test)):
        rec["results"][name] = {"wer": wer, "cer": cer, "errors": int(wer * 10), "words": 1000, "ins": 1, "del": 2,
                                "sub": int(wer * 10) - 3,
                                "kaldi_line": f"%WER {wer:.2f} [ {int(wer * 10)} / 1000, 1 ins, 2 del, "
                                              f"{int(wer * 10) - 3} sub ] exp/{system}/decode_{name}"}
    return rec


def write_records(recipe_dir, records):
    (recipe_dir / "results").mkdir(parents=True)
    for rec in records:
        (recipe_dir / "results" / f"{rec['system']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))


def test_make_results_from_two_records(tmp_path):
    r = tmp_path / "digits"  # no exp/ at all: only the records are read
    write_records(r, [record("student_scratch", 1, 8.0, 9.5, cer=4.0), record("teacher", 1, 3.0, 3.5, cer=1.5)])
    make_results_bin.main(["--recipe-dir", str(r)])
    md = (r / "RESULTS.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Results: digits"
    # teacher group before the LSTM-from-scratch group, each with its table
    assert md.index("## Teacher (DNN)") < md.index("## LSTM from scratch")
    header = "| system | data | seed | dev WER | test WER | test CER | train time | commit |"
    assert lines.count(header) == 2
    assert "| teacher | 1000 utts, 1.25 h | 1 | 3.00 | 3.50 | 1.50 | 10.0m | abc123 |" in lines
    assert "| student_scratch | 1000 utts, 1.25 h | 1 | 8.00 | 9.50 | 4.00 | 10.0m | abc123 |" in lines
    assert "%WER 3.50 [ 35 / 1000, 1 ins, 2 del, 32 sub ] exp/teacher/decode_test  # teacher seed 1" in lines
    assert "  ./run.sh --seed 1" in lines
    assert "![test WER per system](results/results.png)" in lines
    png = r / "results" / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100


def test_make_results_mean_std_over_seeds(tmp_path):
    r = tmp_path / "digits"
    write_records(r, [record("student_kt_ft", 1, 5.0, 6.0, commit="c1"),
                      record("student_kt_ft_seed2", 2, 7.0, 8.0, commit="c2"),
                      record("teacher", 1, 3.0, 3.5)])
    md = render_markdown(load_records(r / "results"))
    assert "| student_kt_ft | 1000 utts, 1.25 h | 1,2 | 6.00 ± 1.41 | 7.00 ± 1.41 | 1.00 ± 0.00 | 10.0m | c1,c2 |" \
        in md.splitlines()
    assert md.index("## Teacher (DNN)") < md.index("## LSTM, KT pre-training + fine-tuning")


def test_bad_record_is_named(tmp_path, capsys):
    r = tmp_path / "digits"
    write_records(r, [record("teacher", 1, 3.0, 3.5)])
    (r / "results" / "broken.yaml").write_text("system: x\n")
    with pytest.raises(AsrktError, match=re.escape(f"{r / 'results' / 'broken.yaml'}: not a result record: "
                                                   "missing group")):
        load_records(r / "results")
    with pytest.raises(SystemExit):
        make_results_bin.main(["--recipe-dir", str(tmp_path / "nowhere")])
    assert "results directory not found" in capsys.readouterr().err
