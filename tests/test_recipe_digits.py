"""Smoke run of the default recipe on the tiny digits corpus: every stage one by one, a rerun that skips all of
them, and an --overwrite that redoes one. Slow (a few minutes on 2 cores), and CI runs it."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

# Tiny models and one epoch: this checks that the stages fit together, not the WER.
TINY_TRAIN_ARGS = ("--schedule.max_epochs 1 --schedule.min_epochs 1 --model.dnn.hidden_units 64 "
                   "--model.dnn.hidden_layers 2 --model.lstm.cells 32 --model.lstm.num_layers 1")
SYSTEMS = ("teacher", "student_kt_ft", "student_scratch", "student_kt_reg")
# Method systems next to the plain ones (--teacher-variants, --kt-variants), scored with records of their own.
# The KT variant names a teacher checkpoint that does not exist, for PKT's on-the-fly teacher and for TLI's
# source: the recipe must train it with this run's teacher instead.
KT_VARIANT_CONFIG = """include: student_pkt.yaml
loss: {teacher_model: exp/not_this_teacher/final.pt}
init: {method: tli, from_model: exp/not_this_teacher/final.pt}
"""
VARIANT_ARGS = ("--teacher-variants", "teacher_layerwise:conf/teacher_layerwise.yaml",
                "--kt-variants", "student_pkt_tli:conf/student_pkt_tli.yaml")
VARIANT_SYSTEMS = ("teacher_layerwise", "student_pkt_tli_ft")


def _recipe_copy(repo_root: Path, dest: Path) -> Path:
    """egs/digits as a user would have it, in a temporary folder (shared parts linked, settings copied)."""
    src = repo_root / "egs" / "digits"
    dest.mkdir()
    for name in ("utils", "kt.sh", "path.sh", "local"):
        (dest / name).symlink_to(src / name)
    for name in ("run.sh", "cmd.sh", "RESULTS.md"):
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "conf", dest / "conf")
    shutil.copytree(src / "results", dest / "results")  # the committed reference results
    return dest


def tree_hashes(root: Path, names) -> dict:
    """sha1 of every file under ``root``'s ``names`` (files or folders), links not followed."""
    out = {}
    for name in names:
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            out[str(f.relative_to(root))] = hashlib.sha1(f.read_bytes()).hexdigest()
    return out


# What a run of the copy could write to in the repository: the reference results, and what it reaches through its
# links. (Not the whole of egs/: other work may edit, e.g., configs while the test runs.)
REPO_PATHS = ("egs/digits/results", "egs/digits/RESULTS.md", "egs/digits/local", "egs/TEMPLATE")


def tracked_egs_hashes(repo_root: Path) -> dict:
    """sha1 of the tracked files of REPO_PATHS as they are on disk (a recipe run must change none of them)."""
    out = subprocess.run(["git", "ls-files", "-z", *REPO_PATHS], cwd=repo_root, capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    files = [f for f in out.stdout.decode().split("\0") if f and (repo_root / f).is_file()]
    return {f: hashlib.sha1((repo_root / f).read_bytes()).hexdigest() for f in files}


def _run(recipe: Path, *args: str) -> str:
    # A one-epoch teacher is degenerate by design here: the stage-4 gate is told to let it through.
    cmd = ["./run.sh", "--data-opts", "--size tiny", "--train-args", TINY_TRAIN_ARGS,
           "--teacher-check-args", "--max-error-rate 101", *args]
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    assert "Successfully finished" in out
    return out


@pytest.mark.slow
def test_digits_recipe_stage_by_stage_rerun_and_overwrite(repo_root, tmp_path):
    recipe = _recipe_copy(repo_root, tmp_path / "digits")
    (recipe / "conf/student_pkt_tli.yaml").write_text(KT_VARIANT_CONFIG)
    source_files = ("run.sh", "cmd.sh", "conf", "results", "RESULTS.md")
    sources_before = tree_hashes(recipe, source_files)
    egs_before = tracked_egs_hashes(repo_root)

    for stage in range(8):
        out = _run(recipe, "--stage", str(stage), "--stop-stage", str(stage), *VARIANT_ARGS)
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
    assert all(system in results for system in SYSTEMS) and "## Next to the reference results" in results
    # The variants: in the plain systems' tables; the KT variant pre-trained on this run's teacher, then fine-tuned.
    groups = {s: yaml.safe_load((recipe / "exp/results" / f"{s}.yaml").read_text())["group"] for s in VARIANT_SYSTEMS}
    assert groups == {"teacher_layerwise": "teacher", "student_pkt_tli_ft": "lstm_kt_finetune"}
    cfg = yaml.safe_load((recipe / "exp/student_pkt_tli/config.yaml").read_text())
    assert cfg["loss"]["teacher_model"] == cfg["init"]["from_model"] == "exp/teacher/final.pt"
    assert "tli from exp/teacher/final.pt" in (recipe / "exp/student_pkt_tli/log/train.log").read_text()
    ft_info = yaml.safe_load((recipe / "exp/student_pkt_tli_ft/train_info.yaml").read_text())
    assert ft_info["init_from"] == "exp/student_pkt_tli/final.pt"
    assert "reference test WER" in out  # this run printed next to the committed reference results
    # The run wrote its results under exp/ only: the recipe's source files, the committed reference results
    # included, are as they were (a first `make demo` used to leave a dirty git tree).
    assert tree_hashes(recipe, source_files) == sources_before

    # A rerun skips every stage: nothing is trained, synthesised or decoded again.
    marker = recipe / "exp/teacher/decode_test/.done"
    before = marker.stat().st_mtime_ns
    out = _run(recipe, *VARIANT_ARGS)
    assert "epoch 1" not in out and "synthesising" not in out
    assert out.count("skipping it") >= 10
    assert marker.stat().st_mtime_ns == before

    # --overwrite true redoes what it is asked to (here stages 1 and 7) and only that.
    feats = recipe / "data/dev/feats.scp"
    feats_before = feats.stat().st_mtime_ns
    out = _run(recipe, "--stage", "1", "--stop-stage", "1", "--overwrite", "true")
    assert "redoing it" in out and feats.stat().st_mtime_ns != feats_before
    out = _run(recipe, "--stage", "7", "--stop-stage", "7", "--overwrite", "true")
    assert "redoing it" in out and "%WER" in out
    assert marker.stat().st_mtime_ns != before
    assert (recipe / "exp/posteriorgram.png").is_file() and (recipe / "exp/curves.png").is_file()
    assert tree_hashes(recipe, source_files) == sources_before
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
    out = _run(recipe, "--stage", "3", "--stop-stage", "3", "--overwrite", "true")
    assert "the previous exp/teacher is kept as exp/teacher.old" in out
    assert hashlib.sha1((recipe / "exp/teacher.old/final.pt").read_bytes()).hexdigest() == sha
    assert (recipe / "exp/teacher/.done").is_file()

    # A finished system and a changed config: refused with what to do, not skipped as done (issue 16).
    proc = subprocess.run(["./run.sh", "--data-opts", "--size tiny", "--stage", "3", "--stop-stage", "3",
                           "--train-args", TINY_TRAIN_ARGS + " --optim.lr 0.123"],
                          cwd=recipe, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "exp/teacher was trained with another config than conf/teacher.yaml" in proc.stderr
    out = _run(recipe, "--stage", "3", "--stop-stage", "3")  # the same config: done, skipped
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
     "--teacher-variants/--kt-variants: two systems would write the result record student_kt_ft_lm: rename one"),
])
def test_bad_recipe_options_are_one_error_line(repo_root, tmp_path, args, message):
    """Refused before any stage runs, with one line; nothing is written."""
    recipe = _recipe_copy(repo_root, tmp_path / "digits")
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"ERROR: {message}" in proc.stderr, proc.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()
