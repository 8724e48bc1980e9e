"""What the tests that run the tiny digits recipe share: a copy of egs/digits, its command line, file hashes."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

# Tiny models and one epoch: the recipe tests check that the stages fit together (and resume), not the WER.
TINY_TRAIN_ARGS = ("--schedule.max_epochs 1 --schedule.min_epochs 1 --model.dnn.hidden_units 64 "
                   "--model.dnn.hidden_layers 2 --model.lstm.cells 32 --model.lstm.num_layers 1")
SYSTEMS = ("teacher", "student_kt_ft", "student_scratch", "student_kt_reg")
REPO_ROOT = Path(__file__).resolve().parents[1]


def recipe_copy(repo_root: Path, dest: Path) -> Path:
    """egs/digits as a user would have it, in a temporary folder (shared parts linked, settings copied)."""
    src = repo_root / "egs" / "digits"
    dest.mkdir(parents=True)
    for name in ("utils", "kt.sh", "path.sh", "local"):
        (dest / name).symlink_to(src / name)
    for name in ("run.sh", "cmd.sh", "RESULTS.md"):
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "conf", dest / "conf")
    shutil.copytree(src / "results", dest / "results")  # the committed reference results
    return dest


# The transfer-method variants ride along in the shared tiny run (issue 15): two teacher variants (layer-wise
# pre-training; DILS, whose depth model stage 7 decodes: one epoch inserts no layer, so one depth) and a KT variant
# that combines PKT with a TLI initialisation. Its config names a teacher that does not exist: kt.sh must hand it
# this run's teacher instead.
KT_VARIANT_CONFIG = """include: student_pkt.yaml
loss: {teacher_model: exp/not_this_teacher/final.pt}
init: {method: tli, from_model: exp/not_this_teacher/final.pt}
"""
VARIANT_ARGS = ("--teacher-variants", "teacher_layerwise:conf/teacher_layerwise.yaml teacher_dils:conf/teacher_dils.yaml",
                "--kt-variants", "student_pkt_tli:conf/student_pkt_tli.yaml")
VARIANT_SYSTEMS = ("teacher_layerwise", "teacher_dils", "student_pkt_tli_ft")


def add_variant_configs(recipe: Path) -> tuple[str, ...]:
    """Write the KT variant's config into a recipe copy; the options that run both variants."""
    (recipe / "conf" / "student_pkt_tli.yaml").write_text(KT_VARIANT_CONFIG)
    return VARIANT_ARGS


def tiny_command(*args: str) -> list[str]:
    """./run.sh on the tiny corpus with tiny models, then ``args``."""
    # A one-epoch teacher is degenerate by design here: the stage-4 gate is told to let it through.
    return ["./run.sh", "--data-opts", "--size tiny", "--train-args", TINY_TRAIN_ARGS,
            "--teacher-check-args", "--max-error-rate 101", *args]


def run_tiny(recipe: Path, *args: str) -> str:
    """Run the tiny recipe to its end; its output, after checking that it succeeded."""
    cmd = tiny_command(*args)
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    assert "Successfully finished" in out
    return out


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


# ---------------------------------------------------------------- what a run made, independent of where and when
OUTPUT_FOLDERS = ("downloads", "data", "exp")
# Fields that say when or how fast something ran (and those ending in _time_s or _seconds): they differ between
# any two runs.
TIMING_KEYS = frozenset({"date", "created", "seconds", "rtf", "frames_per_s"})
# Derived from what is compared, plus the training times: exp/RESULTS.md (from exp/results/*.yaml), DILS's table
# of depths (from its depths.tsv and the depth decodes).
DERIVED = frozenset({"exp/RESULTS.md", "exp/teacher_dils/dils/depths.md"})
# Temporary names that a kill can leave behind: asrkt.utils.atomic's (.x.tmp<pid>, .x.old<pid>), log.sh's
# .done.tmp.<pid>, make_fbank.sh's .backup, tempfile's .scp.*.tmp, lang.py's and gmm.py's x.tmp.
TEMPORARY = re.compile(r"(^\..*\.(tmp|old)\d*(\..*)?$)|(\.tmp$)|(^\.backup$)")


def _is_timing(key) -> bool:
    return isinstance(key, str) and (key in TIMING_KEYS or key.endswith(("_time_s", "_seconds")))


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if not _is_timing(k)}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _canonical(value) -> str:
    """A stable text form of a torch.load result, tensors by the sha1 of their bytes."""
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return f"tensor({t.dtype},{tuple(t.shape)},{_sha1(t.reshape(-1).view(torch.uint8).numpy().tobytes())})"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_canonical(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return repr(value)


def ark_scp_values(path: Path) -> dict[str, str]:
    """{utterance: sha1 of its matrix} of a .scp that points into archives; every entry is read, so a
    half-written archive under its final name fails here."""
    from asrkt.io.ark import read_matrices

    return {utt: f"{m.dtype}{m.shape}:{_sha1(np.ascontiguousarray(m).tobytes())}"
            for utt, m in read_matrices(f"scp:{path}")}


def _points_into_archives(path: Path) -> bool:
    first = path.read_text().split("\n", 1)[0].split()
    return len(first) == 2 and ".ark:" in first[1]


def output_digest(recipe: Path) -> dict[str, str]:
    """{file (or file:utterance): digest} of what a run of ``recipe`` made under OUTPUT_FOLDERS, so that two runs
    compare equal when they computed the same things: logs and timing fields are left out, the recipe's own path
    is written <recipe>, matrices are compared by value per utterance (feature archives are named after the run
    that made them), checkpoints by their content less the timing of the epochs, final.pt by its bytes."""
    import torch

    recipe_paths = sorted({str(recipe), str(recipe.resolve())}, key=len, reverse=True)
    out = {}
    for top in OUTPUT_FOLDERS:
        for path in sorted((recipe / top).rglob("*")):
            rel = str(path.relative_to(recipe))
            if "log" in path.parts or path.suffix in (".log", ".out", ".ark") or rel in DERIVED:
                continue  # logs; archives are compared through the tables that point into them
            if path.is_symlink():
                out[rel] = f"-> {os.readlink(path)}"
                if path.name == "final.pt":
                    out[f"{rel} (bytes)"] = _sha1(path.read_bytes())
                continue
            if path.is_dir():
                continue
            if path.name == ".done":  # holds the time it was written
                out[rel] = "done"
            elif path.suffix == ".scp" and _points_into_archives(path):
                out.update({f"{rel}:{utt}": v for utt, v in ark_scp_values(path).items()})
            elif path.suffix == ".pt":
                out[rel] = _sha1(_canonical(_without_timing(torch.load(path, map_location="cpu",
                                                                         weights_only=False))).encode())
            else:
                try:
                    text = path.read_text()
                except UnicodeDecodeError:  # audio, plots, FSTs, the BPE model
                    out[rel] = _sha1(path.read_bytes())
                    continue
                for p in recipe_paths:
                    text = text.replace(p, "<recipe>")
                if path.suffix == ".yaml":
                    text = yaml.safe_dump(_without_timing(yaml.safe_load(text)), sort_keys=True)
                elif path.suffix == ".tsv":
                    rows = [line.split("\t") for line in text.splitlines()]
                    keep = [i for i, name in enumerate(rows[0]) if not _is_timing(name)]
                    text = "\n".join("\t".join(row[i] for i in keep) for row in rows)
                out[rel] = _sha1(text.encode())
    return out


# ---------------------------------------------------------------- processes
def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead: it only waits to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def processes_in(folder: Path, marker: str = "") -> dict[int, str]:
    """{pid: command line} of the live processes whose working directory is ``folder`` or below it (and whose
    command line contains ``marker``). Linux only (reads /proc)."""
    folder = folder.resolve()
    out = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            cwd = Path(os.readlink(proc / "cwd"))
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours
            continue
        if (cwd == folder or folder in cwd.parents) and marker in cmdline and alive(int(proc.name)):
            out[int(proc.name)] = cmdline
    return out


# ---------------------------------------------------------------- the shared reference run
SOURCE_FILES = ("run.sh", "cmd.sh", "conf", "results", "RESULTS.md")


@dataclass
class TinyRun:
    recipe: Path
    outputs: list[str]  # of each stage's ./run.sh call
    sources_before: dict  # tree_hashes of SOURCE_FILES before the run
    egs_before: dict  # tracked_egs_hashes before the run
    digest: dict  # output_digest right after the run


@pytest.fixture(scope="session")
def tiny_digits_run(tmp_path_factory) -> TinyRun:
    """The tiny recipe, with the variants of VARIANT_ARGS, run stage by stage (a ./run.sh call per stage, none
    interrupted), once per session: the
    stage-by-stage test checks it and goes on to rerun and overwrite parts of it; the fault-injection test
    compares its killed and rerun recipe with the digest taken here, before anything reran."""
    recipe = recipe_copy(REPO_ROOT, tmp_path_factory.mktemp("tiny_reference") / "digits")
    variants = add_variant_configs(recipe)
    sources_before, egs_before = tree_hashes(recipe, SOURCE_FILES), tracked_egs_hashes(REPO_ROOT)
    outputs = [run_tiny(recipe, "--stage", str(stage), "--stop-stage", str(stage), *variants) for stage in range(8)]
    return TinyRun(recipe, outputs, sources_before, egs_before, output_digest(recipe))
