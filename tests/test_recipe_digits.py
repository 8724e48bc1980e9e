"""Smoke run of the default recipe on the tiny digits corpus: every stage one by one, a rerun that skips all of
them, and an --overwrite that redoes one. Slow (a few minutes on 2 cores), and CI runs it."""
from __future__ import annotations

import hashlib
import re
import subprocess

import pytest
import yaml
from recipe_helpers import (
    SOURCE_FILES, SYSTEMS, TINY_TRAIN_ARGS, VARIANT_SYSTEMS, recipe_copy, run_tiny, tracked_egs_hashes, tree_hashes,
)


@pytest.mark.slow
def test_digits_recipe_stage_by_stage_rerun_and_overwrite(repo_root, tiny_digits_run):
    recipe = tiny_digits_run.recipe  # every stage run one by one (the shared fixture)
    sources_before, egs_before = tiny_digits_run.sources_before, tiny_digits_run.egs_before
    for stage, out in enumerate(tiny_digits_run.outputs):
        assert f"Stage {stage}: finished" in out

    # What each stage left behind.
    for x in ("train", "dev", "test"):
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "feats.scp", "cmvn.scp", "utt2num_frames",
                  "feats_info.yaml"):
            assert (recipe / "data" / x / f).is_file(), f"data/{x}/{f} missing"
    assert (recipe / "data/lang_bpe50_train/tokens.txt").is_file()  # named after the training set
    info = yaml.safe_load((recipe / "exp/teacher/post_train/post_info.yaml").read_text())
    assert info["kind"] == "log_probs" and info["num_classes"] == 50
    assert (recipe / "exp/student_kt/final.pt").exists()
    # Stage 4's teacher check ran as a job ($decode_cmd), its verdict in its log.
    assert "fit to teach" in (recipe / "exp/teacher/log/check_teacher.log").read_text()
    for system in SYSTEMS + VARIANT_SYSTEMS:
        for x in ("dev", "test"):
            assert "%WER" in (recipe / "exp" / system / f"decode_{x}" / "wer.txt").read_text()
        assert (recipe / "exp" / "results" / f"{system}.yaml").is_file()
        # TLG with the LM, at the acoustic scale chosen on dev: a record of its own
        best = yaml.safe_load((recipe / "exp" / system / "tune_lm_dev" / "best.yaml").read_text())
        lm_record = yaml.safe_load((recipe / "exp" / "results" / f"{system}_lm.yaml").read_text())
        assert lm_record["results"]["test"]["acoustic_scale"] == best["acoustic_scale"]
        assert yaml.safe_load((recipe / "exp" / system / "decode_lm_test" / "score.yaml").read_text()
                              )["decoder"]["method"] == "tlg"
        assert (recipe / "exp" / system / "log" / "train_job.log").is_file()  # trained through $train_cmd
        assert (recipe / "exp" / system / "decode_test" / "log" / "decode.2.log").is_file()  # $decode_cmd JOB=1:2
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert all(system in results for system in SYSTEMS + VARIANT_SYSTEMS)
    assert "## Next to the reference results" in results
    # The variants (issue 15): grouped with their plain kind, and the KT variant got this run's teacher for both
    # the on-the-fly teacher (PKT) and the TLI source, not the path its config names; fine-tuned from itself.
    groups = {s: yaml.safe_load((recipe / "exp/results" / f"{s}.yaml").read_text())["group"] for s in VARIANT_SYSTEMS}
    assert groups == {"teacher_layerwise": "teacher", "teacher_dils": "teacher", "student_pkt_tli_ft": "lstm_kt_finetune"}
    # DILS: its depth's model decoded on the dev set (greedy, CTC's first decode variant), the WER in the table.
    depths = (recipe / "exp/teacher_dils/dils/depths.md").read_text()
    wer = yaml.safe_load((recipe / "exp/teacher_dils/dils/decode_dev_depth_2/score.yaml").read_text())["wer"]
    assert f"| 2 | 1 | 1 | 1 | 1 |" in depths and f"{wer:.2f} |" in depths
    cfg = yaml.safe_load((recipe / "exp/student_pkt_tli/config.yaml").read_text())
    assert cfg["loss"]["teacher_model"] == cfg["init"]["from_model"] == "exp/teacher/final.pt"
    assert "tli from exp/teacher/final.pt" in (recipe / "exp/student_pkt_tli/log/train.log").read_text()
    ft_info = yaml.safe_load((recipe / "exp/student_pkt_tli_ft/train_info.yaml").read_text())
    assert ft_info["init_from"] == "exp/student_pkt_tli/final.pt"
    assert "reference test WER" in out  # this run printed next to the committed reference results
    # The run wrote its results under exp/ only: the recipe's source files, the committed reference results
    # included, are as they were (a first `make demo` used to leave a dirty git tree).
    assert tree_hashes(recipe, SOURCE_FILES) == sources_before

    # A rerun skips every stage: nothing is trained, synthesised or decoded again.
    marker = recipe / "exp/teacher/decode_test/.done"
    before = marker.stat().st_mtime_ns
    out = run_tiny(recipe)
    assert "epoch 1" not in out and "synthesising" not in out
    assert out.count("skipping it") >= 10
    assert marker.stat().st_mtime_ns == before

    # --overwrite true redoes what it is asked to (here stages 1 and 7) and only that.
    feats = recipe / "data/dev/feats.scp"
    feats_before = feats.stat().st_mtime_ns
    out = run_tiny(recipe, "--stage", "1", "--stop-stage", "1", "--overwrite", "true")
    assert "redoing it" in out and feats.stat().st_mtime_ns != feats_before
    out = run_tiny(recipe, "--stage", "7", "--stop-stage", "7", "--overwrite", "true")
    assert "redoing it" in out and "%WER" in out
    assert marker.stat().st_mtime_ns != before
    assert (recipe / "exp/posteriorgram.png").is_file() and (recipe / "exp/curves.png").is_file()
    assert tree_hashes(recipe, SOURCE_FILES) == sources_before
    changed = {f for f, h in tracked_egs_hashes(repo_root).items() if egs_before.get(f) != h}
    assert not changed, f"the recipe run changed tracked files under egs/: {sorted(changed)}"

    # --overwrite true on a training stage: a config that does not resolve leaves the old model as it was; one that
    # does keeps the old system as exp/teacher.old (issue 16: it used to be deleted before the config was read).
    teacher = recipe / "exp/teacher/final.pt"
    sha = hashlib.sha1(teacher.read_bytes()).hexdigest()
    (recipe / "conf/teacher_typo.yaml").write_text("include: teacher.yaml\nmodel:\n  dnn:\n    hiden_units: 8\n")
    proc = subprocess.run(["./run.sh", "--data-opts", "--size tiny", "--stage", "3", "--stop-stage", "3",
                           "--overwrite", "true", "--teacher-config", "conf/teacher_typo.yaml"],
                          cwd=recipe, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "unknown config key 'model.dnn.hiden_units'" in proc.stderr
    assert "exp/teacher is left as it was" in proc.stderr
    assert hashlib.sha1(teacher.read_bytes()).hexdigest() == sha and (recipe / "exp/teacher/.done").is_file()
    out = run_tiny(recipe, "--stage", "3", "--stop-stage", "3", "--overwrite", "true")
    assert "the previous exp/teacher is kept as exp/teacher.old" in out
    assert hashlib.sha1((recipe / "exp/teacher.old/final.pt").read_bytes()).hexdigest() == sha
    assert (recipe / "exp/teacher/.done").is_file()

    # Stage 4's teacher check, a $decode_cmd job: a teacher it refuses stops the recipe with the check's own error
    # (from the job's log) and where the log is.
    proc = subprocess.run(["./run.sh", "--data-opts", "--size tiny", "--stage", "4", "--stop-stage", "4",
                           "--train-args", TINY_TRAIN_ARGS, "--teacher-check-args", "--max-error-rate 1"],
                          cwd=recipe, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stderr
    assert re.search(r"ERROR: exp/teacher/final\.pt: the teacher is degenerate on data/dev \(dev ter [0-9.]+% >= 1%",
                     proc.stderr), proc.stderr
    assert "ERROR: the teacher check failed (log: exp/teacher/log/check_teacher.log)" in proc.stderr, proc.stderr

    # A finished system and a changed config: refused with what to do, not skipped as done (issue 16).
    proc = subprocess.run(["./run.sh", "--data-opts", "--size tiny", "--stage", "3", "--stop-stage", "3",
                           "--train-args", TINY_TRAIN_ARGS + " --optim.lr 0.123"],
                          cwd=recipe, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "exp/teacher was trained with another config than conf/teacher.yaml" in proc.stderr
    out = run_tiny(recipe, "--stage", "3", "--stop-stage", "3")  # the same config: done, skipped
    assert "exp/teacher is done" in out


@pytest.mark.parametrize("args, message", [
    (["--train-fraction", "x"], "--train-fraction must be a number in (0, 1], got 'x'"),
    (["--train-fraction", "1.5"], "--train-fraction must be a number in (0, 1], got '1.5'"),
    (["--stage", "foo"], "--stage and --stop-stage take a whole number, got 'foo'"),
    (["--teacher-variants", "conf/teacher_dbn.yaml"],
     "--teacher-variants: 'conf/teacher_dbn.yaml' is not name:config (a name of letters, digits and _;"),
    (["--kt-variants", "student_x:conf/no_such.yaml"],
     "--kt-variants: student_x: config file conf/no_such.yaml not found"),
    (["--kt-variants", "student_kt:conf/student_tli.yaml"],
     "--kt-variants: student_kt: the name student_kt is taken (exp/student_kt is another system's)"),
    (["--teacher-variants", "t_ft:conf/teacher_dbn.yaml", "--kt-variants", "t:conf/student_tli.yaml"],
     "--kt-variants: t: the name t_ft is taken"),
    (["--teacher-variants", "student_kt_ft_lm:conf/teacher_dbn.yaml"],
     "--teacher-variants/--kt-variants/--kt-reg-variants: two systems would write the result record student_kt_ft_lm: "
     "rename one"),
    (["--kt-reg-variants", "student_kt_reg:conf/student_kt_reg.yaml"],
     "--kt-reg-variants: student_kt_reg: the name student_kt_reg is taken"),
])
def test_bad_recipe_options_are_one_error_line(repo_root, tmp_path, args, message):
    """Refused before any stage runs, with one line; nothing is written."""
    recipe = recipe_copy(repo_root, tmp_path / "digits")
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"ERROR: {message}" in proc.stderr, proc.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()
