"""Result records (record_result) and the RESULTS.md table + bar chart made from them alone (make_results)."""
from __future__ import annotations

import re

import pytest
import yaml

from asrkt.bin import make_results as make_results_bin
from asrkt.bin import record_result as record_bin
from asrkt.data.kaldi_dir import write_data_dir
from asrkt.decode.search import DecodeConfig
from asrkt.score.results import family_of, load_records, mean_std, render_markdown, system_group
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
    assert out == recipe / "exp" / "results" / "student_kt_ft.yaml"  # a run's record stays under exp/
    assert not (recipe / "results").exists()
    rec = yaml.safe_load(out.read_text())
    assert rec["system"] == "student_kt_ft" and rec["family"] == "student_kt_ft"
    assert rec["group"] == "other" and rec["corpus"] == "digits" and rec["seed"] == 3  # nothing says what it is
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


def test_record_group_and_training_facts_from_train_info(recipe):
    """The group comes from what the system is (train_info.yaml), not from its name; the trainer's facts are kept."""
    exp = recipe / "exp" / "student_kt_ft"
    (exp / "train_info.yaml").write_text(yaml.safe_dump({
        "objective": "ctc", "metric": "ter", "loss_terms": {"kd": 0.5, "ctc": 0.5}, "best_epoch": 1, "epochs": 2,
        "stop_reason": "converged (newbob end rule)", "train_time_s": 40.0, "model_type": "lstm", "init_from": ""}))
    rec = yaml.safe_load(record_bin.main(["--recipe-dir", str(recipe), "--system", "a_teacher_by_name",
                                          "--exp-dir", "exp/student_kt_ft", "--seed", "1"]).read_text())
    assert rec["group"] == "lstm_kt_regularised"
    assert rec["loss_terms"] == {"kd": 0.5, "ctc": 0.5} and rec["best_epoch"] == 1 and rec["epochs"] == 2
    assert rec["stop_reason"] == "converged (newbob end rule)" and rec["train_time_s"] == 40.0


def test_system_group_from_train_info_or_config(tmp_path):
    def exp(name, info=None, cfg=None):
        d = tmp_path / name
        d.mkdir()
        if info is not None:
            (d / "train_info.yaml").write_text(yaml.safe_dump(info))
        if cfg is not None:
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        return d

    assert system_group(exp("s1", {"model_type": "dnn", "loss_terms": {"ctc": 1.0}})) == "teacher"
    assert system_group(exp("s2", {"model_type": "lstm", "loss_terms": {"ctc": 1.0}, "init_from": ""})) \
        == "lstm_scratch"
    assert system_group(exp("s3", {"model_type": "lstm", "loss_terms": {"ctc": 1.0},
                                   "init_from": "exp/student_kt/final.pt"})) == "lstm_kt_finetune"
    assert system_group(exp("s4", {"model_type": "lstm", "loss_terms": {"kd_topk": 0.3, "ctc": 0.7}})) \
        == "lstm_kt_regularised"
    # Exp folders from before train_info.yaml: the saved config and the training command.
    assert system_group(exp("teacher_named_scratch", cfg={"model": {"type": "dnn"}})) == "teacher"
    lstm = {"model": {"type": "lstm"}, "loss": {"kd_alpha": 0.0}}
    assert system_group(exp("o1", cfg=lstm), "python -m asrkt.bin.train --init-from exp/k/final.pt") \
        == "lstm_kt_finetune"
    assert system_group(exp("student_kt_reg", cfg=lstm), "python -m asrkt.bin.train") == "lstm_scratch"
    assert system_group(exp("o3", cfg={"model": {"type": "lstm"}, "loss": {"kd_alpha": 0.5}})) \
        == "lstm_kt_regularised"
    assert system_group(exp("nothing")) == "other"


def test_family_and_mean_std():
    assert family_of("student_kt_ft_seed12") == "student_kt_ft" and family_of("teacher") == "teacher"
    assert mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00" and mean_std([2.5]) == "2.50" and mean_std([]) == "-"


GROUP_OF = {"teacher": "teacher", "student_scratch": "lstm_scratch", "student_kt_ft": "lstm_kt_finetune",
            "student_kt_reg": "lstm_kt_regularised"}


def record(system, seed, dev, test, group=None, cer=1.0, commit="abc123", time_s=600.0, dev_name="dev"):
    rec = {"version": 1, "system": system, "family": family_of(system), "group": group or GROUP_OF[family_of(system)],
           "corpus": "digits", "data": {"utts": 1000, "hours": 1.25}, "seed": seed, "config_hash": "0123456789ab",
           "commit": commit, "exp_dir": f"exp/{system}", "train_time_s": time_s, "epochs": 5,
           "date": "2026-01-02T03:04:05+00:00", "command": f"./run.sh --seed {seed}", "results": {}}
    for name, wer in ((dev_name, dev), ("test", test)):
        rec["results"][name] = {"wer": wer, "cer": cer, "errors": int(wer * 10), "words": 1000, "ins": 1, "del": 2,
                                "sub": int(wer * 10) - 3,
                                "kaldi_line": f"%WER {wer:.2f} [ {int(wer * 10)} / 1000, 1 ins, 2 del, "
                                              f"{int(wer * 10) - 3} sub ] exp/{system}/decode_{name}"}
    return rec


def write_records(recipe_dir, records, where="results"):
    (recipe_dir / where).mkdir(parents=True, exist_ok=True)
    for rec in records:
        (recipe_dir / where / f"{rec['system']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))


def test_make_results_from_two_records(tmp_path):
    r = tmp_path / "digits"  # no exp/ folders of systems: only the records are read
    write_records(r, [record("student_scratch", 1, 8.0, 9.5, cer=4.0), record("teacher", 1, 3.0, 3.5, cer=1.5)],
                  where="exp/results")
    make_results_bin.main(["--recipe-dir", str(r), "--dev-set", "dev", "--test-sets", "dev test"])
    assert not (r / "RESULTS.md").exists() and not (r / "results").exists()  # a run writes under exp/ only
    md = (r / "exp" / "RESULTS.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Results: digits"
    # teacher group before the LSTM-from-scratch group, each with its table
    assert md.index("## Teacher (DNN)") < md.index("## LSTM from scratch")
    header = "| system | data | seed | dev WER | test WER | test CER | epochs | train time | commit |"
    assert lines.count(header) == 2
    assert "| teacher | 1000 utts, 1.25 h | 1 | 3.00 | 3.50 | 1.50 | 5 | 10.0m | abc123 |" in lines
    assert "| student_scratch | 1000 utts, 1.25 h | 1 | 8.00 | 9.50 | 4.00 | 5 | 10.0m | abc123 |" in lines
    assert "%WER 3.50 [ 35 / 1000, 1 ins, 2 del, 32 sub ] exp/teacher/decode_test  # teacher seed 1" in lines
    assert "  ./run.sh --seed 1" in lines
    assert "![test WER per system](results.png)" in lines
    png = r / "exp" / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100


def test_make_results_mean_std_over_seeds(tmp_path):
    r = tmp_path / "digits"
    seed2, seed3 = record("student_kt_ft_seed2", 2, 7.0, 8.0, commit="c2"), record("student_kt_ft_seed3", 3, 6.0, 7.0,
                                                                                     commit="c2")
    seed3["epochs"] = 8
    write_records(r, [record("student_kt_ft", 1, 5.0, 6.0, commit="c1"), seed2, seed3, record("teacher", 1, 3.0, 3.5)])
    md = render_markdown(load_records(r / "results"), dev="dev", test_sets=["test"])
    # epochs: one per seed, even where two seeds took as many (a column of distinct values misread as seeds)
    assert "| student_kt_ft | 1000 utts, 1.25 h | 1,2,3 | 6.00 ± 1.00 | 7.00 ± 1.00 | 1.00 ± 0.00 | 5,5,8 | 10.0m | c1,c2 |" \
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
        make_results_bin.main(["--recipe-dir", str(tmp_path / "nowhere"), "--results-dir", str(r / "nowhere")])
    assert "results directory not found" in capsys.readouterr().err


def test_make_results_takes_the_set_names_from_the_recipe(tmp_path):
    """AN4's dev set is train_dev: its column was '-' when the names were guessed."""
    r = tmp_path / "an4"
    write_records(r, [record("teacher", 1, 30.0, 35.0, dev_name="train_dev")], where="exp/results")
    make_results_bin.main(["--recipe-dir", str(r), "--dev-set", "train_dev", "--test-sets", "train_dev test"])
    lines = (r / "exp" / "RESULTS.md").read_text().splitlines()
    assert "| system | data | seed | train_dev WER | test WER | test CER | epochs | train time | commit |" in lines
    assert "| teacher | 1000 utts, 1.25 h | 1 | 30.00 | 35.00 | 1.00 | 5 | 10.0m | abc123 |" in lines
    md = render_markdown(load_records(r / "exp" / "results"), dev="train_dev", test_sets=["test", "eval2"])
    assert "| train_dev WER | test WER | test CER | eval2 WER | eval2 CER |" in md


def test_a_run_is_shown_next_to_the_reference_and_promoted_only_on_request(tmp_path, capsys):
    r = tmp_path / "digits"
    write_records(r, [record("teacher", 1, 3.0, 3.5), record("teacher_seed2", 2, 5.0, 5.5),
                      record("student_scratch", 1, 8.0, 9.5)])  # the committed reference
    (r / "RESULTS.md").write_text("reference\n")
    reference = {p.name: p.read_bytes() for p in (r / "results").iterdir()}
    write_records(r, [record("teacher", 1, 4.0, 4.5), record("student_kt_ft", 1, 6.0, 7.0)], where="exp/results")
    capsys.readouterr()
    make_results_bin.main(["--recipe-dir", str(r), "--dev-set", "dev", "--test-sets", "dev test"])
    out = capsys.readouterr().out
    assert "| system | seed | dev WER | test WER | reference dev WER | reference test WER |" in out
    assert "| teacher | 1 | 4.00 | 4.50 | 4.00 ± 1.41 | 4.50 ± 1.41 |" in out
    assert "| student_kt_ft | 1 | 6.00 | 7.00 | - | - |" in out
    assert "## Next to the reference results" in (r / "exp" / "RESULTS.md").read_text()
    # The reference is untouched by a run.
    assert (r / "RESULTS.md").read_text() == "reference\n"
    assert {p.name: p.read_bytes() for p in (r / "results").iterdir()} == reference
    # Promotion is explicit: the chosen record is copied and the committed table regenerated from the reference.
    make_results_bin.main(["--recipe-dir", str(r), "--dev-set", "dev", "--test-sets", "dev test",
                           "--promote", "student_kt_ft"])
    assert (r / "results" / "student_kt_ft.yaml").read_bytes() == \
        (r / "exp" / "results" / "student_kt_ft.yaml").read_bytes()
    assert (r / "results" / "teacher.yaml").read_bytes() == reference["teacher.yaml"]
    md = (r / "RESULTS.md").read_text()
    assert "from the records in `results/*.yaml`" in md and "![test WER per system](results/results.png)" in md
    assert "| student_kt_ft | 1000 utts, 1.25 h | 1 | 6.00 | 7.00 |" in md
    with pytest.raises(SystemExit):
        make_results_bin.main(["--recipe-dir", str(r), "--promote", "nosuch"])
    assert "no record to promote for nosuch" in capsys.readouterr().err
    # --regenerate: the committed table again from the committed records alone (exp/results is not read).
    (r / "RESULTS.md").write_text("stale\n")
    (r / "exp" / "results" / "teacher.yaml").write_text("not a record\n")
    records_before = {p.name: p.read_bytes() for p in (r / "results").iterdir() if p.suffix == ".yaml"}
    make_results_bin.main(["--recipe-dir", str(r), "--dev-set", "dev", "--test-sets", "dev test", "--regenerate"])
    assert (r / "RESULTS.md").read_text() == md
    assert {p.name: p.read_bytes() for p in (r / "results").iterdir() if p.suffix == ".yaml"} == records_before


@pytest.fixture
def toy_decode_setup(tmp_path):
    """A data dir of random features (6 utts, 2 speakers) with CMVN and feats_info, a char lang dir, an LSTM."""
    import numpy as np

    from asrkt.data.kaldi_dir import c_sorted
    from asrkt.features.cmvn import compute_cmvn_stats
    from asrkt.features.fbank import FbankConfig
    from asrkt.features.info import make_feats_info, write_feats_info
    from asrkt.io import MatrixWriter
    from asrkt.models import LstmConfig, ModelConfig, build_model, save_checkpoint
    from asrkt.targets import train_tokenizer

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    feats = {f"spk{s}-u{u}": rng.standard_normal((23 + 25 * u, 13)).astype(np.float32) for s in (0, 1)
             for u in range(3)}
    text = {u: " ".join(rng.choice(["ONE", "TWO", "OH"], size=2)) for u in feats}
    with MatrixWriter(f"ark,scp:{data}/feats.ark,{data}/feats.scp") as w:
        for utt in c_sorted(feats):
            w.write(utt, feats[utt])
    with MatrixWriter(f"ark,scp:{data}/cmvn.ark,{data}/cmvn.scp") as w:
        for spk in ("spk0", "spk1"):
            w.write(spk, compute_cmvn_stats(f for u, f in feats.items() if u.startswith(spk)))
    write_data_dir(data, wav_scp={u: "/dev/null" for u in feats}, text=text, utt2spk={u: u[:4] for u in feats},
                   utt2num_frames={u: str(f.shape[0]) for u, f in feats.items()})
    write_feats_info(data, make_feats_info(FbankConfig(num_mel_bins=13), len(feats),
                                           sum(f.shape[0] for f in feats.values())))
    tok = train_tokenizer(text.values(), tmp_path / "lang", kind="char")
    model = tmp_path / "model.pt"
    save_checkpoint(model, build_model(ModelConfig(type="lstm", lstm=LstmConfig(num_layers=1, cells=8)), 13,
                                       tok.num_classes))
    return {"data": data, "lang": tmp_path / "lang", "student": model}


def test_split_decode_jobs_merged_and_scored_as_one_decode(toy_decode_setup, tmp_path, capsys):
    """Stage 7 decodes as $decode_cmd JOB=1:N over a split data dir, then merges and scores once."""
    from asrkt.bin import decode as decode_bin
    from asrkt.bin import score as score_bin
    from asrkt.data.kaldi_dir import read_table
    from asrkt.data.subset import split_data_dir

    env = toy_decode_setup
    common = ["--model", str(env["student"]), "--lang-dir", str(env["lang"]), "--batch-frames", "100"]
    whole = tmp_path / "whole"
    decode_bin.main(common + ["--data-dir", str(env["data"]), "--out-dir", str(whole)])
    split_data_dir(env["data"], 2)
    out = tmp_path / "exp" / "decode_test"
    for job in (1, 2):
        decode_bin.main(common + ["--data-dir", str(env["data"] / "split2" / str(job)), "--out-dir",
                                  str(out / "split2" / str(job)), "--no-score"])
        assert not (out / "split2" / str(job) / "wer.txt").exists()
    capsys.readouterr()
    score_bin.main(["--decode-dir", str(out), "--data-dir", str(env["data"]), "--nj", "2"])
    assert capsys.readouterr().out.startswith("%WER ")
    assert read_table(out / "hyp.txt") == read_table(whole / "hyp.txt")
    merged, single = (yaml.safe_load((d / "score.yaml").read_text()) for d in (out, whole))
    for key in ("wer", "cer", "errors", "words", "utts", "model_sha1", "audio_s"):
        assert merged[key] == single[key], key
    assert merged["jobs"] == 2 and merged["data_dir"] == str(env["data"])
    (out / "split2" / "2" / "score.yaml").unlink()
    with pytest.raises(SystemExit):
        score_bin.main(["--decode-dir", str(out), "--data-dir", str(env["data"]), "--nj", "2"])
    assert "decoding job 2 of 2 is missing or incomplete" in capsys.readouterr().err


def test_no_lm_decodes_make_their_own_record(recipe):
    """decode_nolm_<set> folders are the same system scored without the LM: not sets of the LM record, but a
    record of their own (--decode-prefix decode_nolm_), with the acoustic scale each set was decoded at."""
    exp = recipe / "exp" / "student_kt_ft"
    for name, wer in (("dev", 20.0), ("test", 22.5)):
        s = score_yaml(wer, 9.0, 20, 100, 1, 2, 17, f"decode_nolm_{name}")
        s["decoder"] = {"method": "hclg", "acoustic_scale": 0.125}
        (exp / f"decode_nolm_{name}").mkdir()
        (exp / f"decode_nolm_{name}" / "score.yaml").write_text(yaml.safe_dump(s))
    common = ["--recipe-dir", str(recipe), "--exp-dir", "exp/student_kt_ft", "--seed", "1"]
    lm = yaml.safe_load(record_bin.main(common + ["--system", "x"]).read_text())
    assert sorted(lm["results"]) == ["dev", "test"] and lm["results"]["dev"]["wer"] == 10.0
    assert "acoustic_scale" not in lm["results"]["dev"]  # these score.yaml name no WFST decoder
    nolm = yaml.safe_load(record_bin.main(common + ["--system", "x_nolm", "--decode-prefix", "decode_nolm_"])
                          .read_text())
    assert sorted(nolm["results"]) == ["dev", "test"] and nolm["results"]["test"]["wer"] == 22.5
    assert nolm["results"]["test"]["acoustic_scale"] == 0.125 and nolm["family"] == "x_nolm"


def test_pick_best_scale(tmp_path, capsys):
    from asrkt.bin.pick_scale import main as pick_scale

    tune = tmp_path / "tune_dev"
    with pytest.raises(SystemExit):
        pick_scale([str(tune)])
    assert "no acwt_<scale>/score.yaml" in capsys.readouterr().err
    for scale, wer in ((0.05, 14.0), (0.083, 12.0), (0.125, 12.0), (0.2, 19.0)):
        (tune / f"acwt_{scale:g}").mkdir(parents=True)
        (tune / f"acwt_{scale:g}" / "score.yaml").write_text(yaml.safe_dump({"wer": wer}))
    best = pick_scale([str(tune)])
    assert capsys.readouterr().out == "0.083\n"  # 12.0 twice: the nearer to the grid's middle (0.1) wins
    assert best == yaml.safe_load((tune / "best.yaml").read_text())
    assert best["dev_wer_by_scale"] == {"0.05": 14.0, "0.083": 12.0, "0.125": 12.0, "0.2": 19.0}
    assert "at_grid_edge" not in best
    (tune / "acwt_0.4").mkdir()
    (tune / "acwt_0.4" / "score.yaml").write_text(yaml.safe_dump({"wer": 11.0}))
    assert pick_scale([str(tune)])["at_grid_edge"] is True
    assert "the best acoustic scale 0.4 is the largest one tried: the best may lie beyond" in capsys.readouterr().err
    (tune / "acwt_0.4" / "score.yaml").unlink()
    (tune / "acwt_0.3").mkdir()
    (tune / "acwt_0.3" / "score.yaml").write_text(yaml.safe_dump({"utts": 3}))
    with pytest.raises(SystemExit):
        pick_scale([str(tune)])
    assert "acwt_0.3/score.yaml: no WER in this decode" in capsys.readouterr().err


def test_data_size_chart_and_anchors(tmp_path, capsys):
    """Families <system>_<P>pct at several sizes make results_by_size.png; local/anchors.yaml is a table of its
    own, and a malformed one is named."""
    from asrkt.bin import make_results as make_results_bin
    from asrkt.score.results import size_curves, system_of_family

    recipe = tmp_path / "an4"
    recs = []
    for size, hours in (("_25pct", 0.16), ("_50pct", 0.32), ("", 0.63)):
        for seed, wer in ((1, 30.0), (2, 34.0)):
            r = record(f"student_kt_ft{size}" + (f"_seed{seed}" if seed > 1 else ""), seed, wer, wer - 1,
                       group="lstm_kt_finetune")
            r["data"] = {"utts": int(hours * 1000), "hours": hours}
            recs.append(r)
    for size, hours in (("_25pct", 0.16), ("", 0.63)):  # a variant at two of the three sizes: no line of its own
        r = record(f"student_kt_T4_ft{size}", 1, 20.0, 21.0, group="lstm_kt_finetune")
        r["data"] = {"utts": int(hours * 1000), "hours": hours}
        recs.append(r)
    write_records(recipe, recs, where="exp/results")
    assert system_of_family("student_kt_ft_25pct") == "student_kt_ft" == system_of_family("student_kt_ft")
    curves = size_curves(recs, "test")
    assert set(curves) == {"student_kt_ft"}
    assert [h for h, _, _ in curves["student_kt_ft"]] == [0.16, 0.32, 0.63]
    assert curves["student_kt_ft"][0][1:] == pytest.approx((31.0, 2 ** 0.5 * 2))
    (recipe / "local").mkdir()
    (recipe / "local" / "anchors.yaml").write_text(
        "anchors:\n- {system: ESPnet Transformer, test_wer: 7.4, source: espnet egs2/an4}\n")
    out = make_results_bin.main(["--recipe-dir", str(recipe), "--dev-set", "dev", "--test-sets", "dev test",
                                 "--promote", "all"])
    text = out.read_text()
    assert "![WER against training-data size](results/results_by_size.png)" in text
    assert (recipe / "results" / "results_by_size.png").stat().st_size > 1000
    assert "| ESPnet Transformer | - | 7.4 | espnet egs2/an4 |" in text
    (recipe / "local" / "anchors.yaml").write_text("anchors:\n- {system: x}\n")
    with pytest.raises(SystemExit):
        make_results_bin.main(["--recipe-dir", str(recipe), "--dev-set", "dev", "--test-sets", "dev test",
                               "--promote", "all"])
    assert "anchors.yaml: expected 'anchors:' with a list" in capsys.readouterr().err
