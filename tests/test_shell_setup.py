"""egs/TEMPLATE/utils/setup.sh (new recipe folders), path.sh, and the symlinks under egs/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EGS = REPO_ROOT / "egs"
TEMPLATE = EGS / "TEMPLATE"
SHARED_LINKS = ("utils", "path.sh", "kt.sh")


def git_ignored_dirs(root: Path) -> set[Path]:
    """Folders under `root` that git ignores (recipe outputs: data/, exp/, ...); empty outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "."],
                             cwd=root, capture_output=True, text=True, timeout=30)
    except OSError:
        return set()
    if out.returncode != 0:
        return set()
    return {(root / line.rstrip("/")).resolve() for line in out.stdout.splitlines() if line.endswith("/")}


def broken_or_absolute_links(root: Path, skip: set[Path] = frozenset()) -> list[str]:
    """Symlinks under `root` (outside `skip`) that do not resolve, or that are absolute (they break when the
    repository moves)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() not in skip]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                if not path.exists():
                    bad.append(f"{path} -> {os.readlink(path)} (broken)")
                elif os.path.isabs(os.readlink(path)):
                    bad.append(f"{path} -> {os.readlink(path)} (absolute)")
    return bad


@pytest.fixture
def fake_repo(tmp_path) -> Path:
    """A copy of egs/TEMPLATE in a repository-like tree, with .venv linking to the running interpreter's
    environment (where asrkt is installed), so that nothing is created in the real egs/."""
    root = tmp_path / "repo"
    shutil.copytree(TEMPLATE, root / "egs" / "TEMPLATE", symlinks=True)
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return root


def setup_sh(repo: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / "egs" / "TEMPLATE" / "utils" / "setup.sh"), target], cwd=repo,
                          capture_output=True, text=True, timeout=30)


def bash(script: str, cwd: Path, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess:
    # A bare environment: whatever the recipe needs must come from path.sh.
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_template_has_its_files_and_executables():
    for name in ("cmd.sh", "path.sh", "run.sh", "kt.sh", "local/data.sh", "utils/parse_options.sh", "utils/log.sh",
                 "utils/setup.sh", "utils/run_local.py", "utils/run_slurm.py"):
        assert (TEMPLATE / name).is_file(), name
    for name in ("run.sh", "local/data.sh", "utils/setup.sh", "utils/run_local.py", "utils/run_slurm.py"):
        assert os.access(TEMPLATE / name, os.X_OK), f"{name} is not executable"


def test_shell_files_parse():
    files = [TEMPLATE / n for n in ("cmd.sh", "path.sh", "run.sh", "local/data.sh")]
    files += sorted((TEMPLATE / "utils").glob("*.sh"))
    for f in files:
        proc = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{f}: {proc.stderr}"


def test_setup_creates_a_working_recipe(fake_repo):
    proc = setup_sh(fake_repo, "egs/mycorpus")
    assert proc.returncode == 0, proc.stderr
    recipe = fake_repo / "egs" / "mycorpus"
    assert sorted(p.name for p in recipe.iterdir()) == ["cmd.sh", "conf", "kt.sh", "local", "path.sh", "run.sh",
                                                        "utils"]
    for name in SHARED_LINKS:
        assert (recipe / name).is_symlink()
        assert os.readlink(recipe / name) == f"../TEMPLATE/{name}"
        assert (recipe / name).resolve() == (fake_repo / "egs" / "TEMPLATE" / name).resolve()
    for name in ("cmd.sh", "run.sh", "local/data.sh"):
        assert not (recipe / name).is_symlink()
        assert (recipe / name).read_text() == (TEMPLATE / name).read_text()
    assert os.access(recipe / "run.sh", os.X_OK) and os.access(recipe / "local" / "data.sh", os.X_OK)
    assert oct((recipe).stat().st_mode & 0o777) == oct(0o755)
    assert broken_or_absolute_links(fake_repo / "egs") == []
    # No temporary folder is left behind.
    assert sorted(p.name for p in (fake_repo / "egs").iterdir()) == ["TEMPLATE", "mycorpus"]


def test_setup_in_a_nested_folder_links_relatively(fake_repo):
    (fake_repo / "egs" / "group").mkdir()
    proc = setup_sh(fake_repo, "egs/group/corpus/")
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(fake_repo / "egs" / "group" / "corpus" / "utils") == "../../TEMPLATE/utils"
    assert broken_or_absolute_links(fake_repo / "egs") == []


def test_setup_copies_the_commented_template_configs(fake_repo):
    """The template ships the configs a new corpus starts from, and setup.sh copies them (it left conf/ empty)."""
    names = sorted(p.name for p in (TEMPLATE / "conf").glob("*.yaml"))
    assert names == ["fbank.yaml", "finetune.yaml", "student_kt.yaml", "student_kt_reg.yaml", "student_model.yaml",
                     "student_scratch.yaml", "teacher.yaml"]
    fbank = (TEMPLATE / "conf" / "fbank.yaml").read_text()
    assert "\nsample_rate: 16000\n" in fbank and "8000" in fbank and "allow_resample" in fbank
    for name in names:  # every template config explains itself
        assert (TEMPLATE / "conf" / name).read_text().startswith("# "), name
    proc = setup_sh(fake_repo, "egs/mycorpus")
    assert proc.returncode == 0, proc.stderr
    conf = fake_repo / "egs" / "mycorpus" / "conf"
    assert sorted(p.name for p in conf.iterdir()) == sorted(names + ["hybrid"])  # hybrid/: --objective hybrid
    assert sorted(p.name for p in (conf / "hybrid").iterdir()) == sorted(
        n for n in names if n != "fbank.yaml")  # each a variant of the CTC config of its name
    for name in names + [f"hybrid/{n}" for n in names if n != "fbank.yaml"]:
        assert not (conf / name).is_symlink() and (conf / name).read_text() == (TEMPLATE / "conf" / name).read_text()
    assert "sample_rate" in proc.stdout


def test_template_configs_resolve():
    from asrkt.features.fbank import FbankConfig
    from asrkt.train.trainer import TrainConfig
    from asrkt.utils.config import resolve

    assert resolve(FbankConfig, TEMPLATE / "conf" / "fbank.yaml").sample_rate == 16000
    for name in ("teacher", "student_kt", "finetune", "student_scratch", "student_kt_reg"):
        resolve(TrainConfig, TEMPLATE / "conf" / f"{name}.yaml")
        hybrid = resolve(TrainConfig, TEMPLATE / "conf" / "hybrid" / f"{name}.yaml")
        assert hybrid.objective == "frame_ce" and hybrid.model.subsampling == 1


def test_setup_copies_template_configs(fake_repo):
    conf = fake_repo / "egs" / "TEMPLATE" / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "fbank.yaml").write_text("num_mel_bins: 40\n")
    proc = setup_sh(fake_repo, "egs/withconf")
    assert proc.returncode == 0, proc.stderr
    copied = fake_repo / "egs" / "withconf" / "conf" / "fbank.yaml"
    assert copied.read_text() == "num_mel_bins: 40\n" and not copied.is_symlink()


def test_setup_refuses_to_overwrite(fake_repo):
    existing = fake_repo / "egs" / "taken"
    existing.mkdir()
    (existing / "run.sh").write_text("mine\n")
    proc = setup_sh(fake_repo, "egs/taken")
    assert proc.returncode == 1
    assert "egs/taken already exists: refusing to overwrite it" in proc.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["run.sh"]
    assert (existing / "run.sh").read_text() == "mine\n"


def test_setup_refuses_an_existing_file_or_dangling_link(fake_repo):
    (fake_repo / "egs" / "dangling").symlink_to("nowhere")
    proc = setup_sh(fake_repo, "egs/dangling")
    assert proc.returncode == 1
    assert "already exists" in proc.stderr


def test_setup_usage_and_missing_parent(fake_repo):
    proc = setup_sh(fake_repo, "egs/no/such/parent")
    assert proc.returncode == 1
    assert "the parent folder egs/no/such of egs/no/such/parent does not exist" in proc.stderr
    proc = subprocess.run(["bash", str(TEMPLATE / "utils" / "setup.sh")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Usage:" in proc.stderr


def test_path_sh_in_a_new_recipe(fake_repo):
    assert setup_sh(fake_repo, "egs/mycorpus").returncode == 0
    recipe = fake_repo / "egs" / "mycorpus"
    proc = bash("set -euo pipefail; . ./path.sh; . ./path.sh; echo \"$LC_ALL $PYTHONUNBUFFERED\"; "
                "echo \"$ASRKT_ROOT\"; command -v python; command -v run_local.py; echo \"$PATH\"; "
                "python -c 'import asrkt'", cwd=recipe)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "C 1"
    assert lines[1] == str(fake_repo.resolve())
    assert lines[2] == str(fake_repo.resolve() / ".venv" / "bin" / "python")
    assert lines[3] == str(recipe.resolve() / "utils" / "run_local.py")
    # Sourced twice, each folder is on PATH once.
    entries = lines[4].split(":")
    assert len(entries) == len(set(entries))


def test_path_sh_fails_clearly_without_asrkt(fake_repo, tmp_path):
    (fake_repo / ".venv").unlink()
    assert setup_sh(fake_repo, "egs/mycorpus").returncode == 0
    # PATH with only what path.sh itself runs, and no python at all.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "readlink"):
        (bindir / tool).symlink_to(shutil.which(tool))
    proc = bash(". ./path.sh || echo returned $?", cwd=fake_repo / "egs" / "mycorpus", path=str(bindir))
    assert proc.stdout.strip() == "returned 1"
    assert "path.sh: python cannot import asrkt (python: not found on PATH" in proc.stderr
    assert f"run 'make install' in the repository root {fake_repo.resolve()}" in proc.stderr


def test_new_recipe_data_sh_says_it_is_not_written(fake_repo):
    assert setup_sh(fake_repo, "egs/mycorpus").returncode == 0
    proc = bash("local/data.sh --corpus-dir /nowhere", cwd=fake_repo / "egs" / "mycorpus")
    assert proc.returncode == 1
    assert ("data preparation for this corpus is not written yet: edit local/data.sh (see egs/an4/local/data.sh)"
            in proc.stderr)
    proc = bash("local/data.sh --bogus 1", cwd=fake_repo / "egs" / "mycorpus")
    assert proc.returncode == 1 and "unknown option '--bogus'" in proc.stderr


def test_template_run_sh_hands_over_to_kt_sh(fake_repo):
    """run.sh passes its option values, then the command line's, to kt.sh (here a stand-in that prints them)."""
    assert setup_sh(fake_repo, "egs/mycorpus").returncode == 0
    recipe = fake_repo / "egs" / "mycorpus"
    (recipe / "kt.sh").unlink()
    (recipe / "kt.sh").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (recipe / "kt.sh").chmod(0o755)
    proc = bash("./run.sh --stage 3 --corpus-dir '/data/my corpus'", cwd=recipe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["--corpus-dir", "", "--test-sets", "dev test", "--token-kind", "char",
                                        "--lexicon", "", "--stage", "3", "--corpus-dir", "/data/my corpus"]


RECIPES = sorted(d for d in EGS.iterdir() if (d / "run.sh").is_file())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda d: d.name)
def test_run_sh_is_a_thin_call_of_kt_sh(recipe):
    """No option declared twice: run.sh declared stage, stop_stage, nj, overwrite again before handing over."""
    import re

    kt_options = set(re.findall(r"^([a-z_][a-z0-9_]*)=", (TEMPLATE / "kt.sh").read_text(), re.M))
    text = (recipe / "run.sh").read_text()
    assert re.findall(r"^([a-z_][a-z0-9_]*)=", text, re.M) == ["opts"], f"{recipe}/run.sh declares options"
    assert 'exec ./kt.sh "${opts[@]}" "$@"' in text
    given = re.findall(r"^\s+--([a-z0-9-]+)\s", text, re.M)
    assert given and all(o.replace("-", "_") in kt_options for o in given), given
    assert len(given) == len(set(given)), f"{recipe}/run.sh sets an option twice"


def test_run_sh_help_lists_the_options_with_the_corpus_values():
    proc = bash("./run.sh --help", cwd=EGS / "digits")
    assert proc.returncode == 0, proc.stderr
    options = {ln.split()[0]: ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("  --")}
    assert options["--token-kind"] == "bpe" and options["--vocab-size"] == "50"  # run.sh's values
    assert options["--stage"] == "0" and options["--nj"] == "2" and options["--valid-set"] == "dev"  # kt.sh's
    assert options["--commit-results"] == "false"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("  --stop-stage"))
    assert line.split("#", 1)[1].strip() == "last stage to run"


def test_no_symlink_under_egs_is_broken():
    # Outputs of recipe runs (ignored by git) are not part of the tree and may hold links of their own.
    assert broken_or_absolute_links(EGS, skip=git_ignored_dirs(EGS)) == []


def test_every_recipe_links_the_shared_files():
    recipes = [d for d in EGS.iterdir() if d.is_dir() and d.name != "TEMPLATE" and not d.name.startswith(".")]
    for recipe in recipes:
        for name in SHARED_LINKS:
            link = recipe / name
            assert link.is_symlink(), f"{link} should be a symlink to ../TEMPLATE/{name}"
            assert link.resolve() == (TEMPLATE / name).resolve(), f"{link} -> {os.readlink(link)}"
