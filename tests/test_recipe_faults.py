"""Fault injection (issue 16): the tiny digits recipe is killed with kill -9 of its whole process group at points
spread over stages 0-7, each kill followed by a plain rerun (which runs on to the next point, and the last one to
the end). After every kill no process of the recipe is left (run_local.py's jobs included: they used to run on
and race the rerun) and no file is half-written under its final name; at the end nothing temporary is left and
everything the recipe made (audio, features, tokenizer, posteriors, models, hypotheses, result records) equals
what the uninterrupted stage-by-stage run of test_recipe_digits made, byte for byte or value for value.
Slow; CI runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from recipe_helpers import (
    OUTPUT_FOLDERS, TEMPORARY, add_variant_configs, ark_scp_values, output_digest, processes_in, recipe_copy, tiny_command, wait_for,
)

POLL_S = 0.02
RUN_TIMEOUT_S = 1200


@dataclass(frozen=True)
class KillPoint:
    """Where the run is killed: when a path matching ``glob`` first exists under the recipe, or when the run's
    output first holds ``line`` (a trigger that already holds when the run starts is an error of this list)."""

    stage: int
    what: str
    glob: str | None = None
    line: str | None = None

    def reached(self, recipe: Path, output: Path) -> bool:
        if self.glob is not None:
            return next(recipe.glob(self.glob), None) is not None
        return self.line in output.read_text(errors="replace")


# In the order a run reaches them, so that each rerun passes the previous point and stops at the next.
KILL_POINTS = (
    KillPoint(0, "synthesising the audio", glob="downloads/.digits_tiny_seed1.tmp*/*/*/*.wav"),
    KillPoint(0, "validating the data dirs", line="Successfully validated data directory data/train"),
    KillPoint(1, "the dev set's fbank jobs running", glob="exp/make_fbank/dev/make_fbank_dev.1.log"),
    KillPoint(1, "between the test and train sets' features",
              line="Succeeded creating fbank features and CMVN stats for test"),
    KillPoint(2, "training the BPE tokenizer", line="Stage 2:"),
    KillPoint(2, "the LM and TLG, after the tokenizer", glob="data/lang_bpe50_train/.done"),
    KillPoint(3, "the teacher's training starting", line="training exp/teacher"),
    KillPoint(3, "the teacher's epoch checkpoint written, final.pt not yet", glob="exp/teacher/checkpoints/epoch_1.pt"),
    KillPoint(4, "posterior dumping jobs running", glob="exp/teacher/post_train/log/dump.1.log"),
    KillPoint(4, "between the train and dev posteriors", glob="exp/teacher/post_train/.done"),
    KillPoint(5, "the KT student's epoch checkpoint written", glob="exp/student_kt/checkpoints/epoch_1.pt"),
    KillPoint(6, "three trainings starting at once", glob="exp/student_scratch/log/train_job.log"),
    KillPoint(6, "a checkpoint of one of the three written", glob="exp/student_kt_reg/checkpoints/epoch_1.pt"),
    KillPoint(7, "greedy decoding jobs running", glob="exp/teacher/decode_dev/log/decode.1.log"),
    KillPoint(7, "WFST acoustic-scale tuning", glob="exp/student_kt_ft/tune_lm_dev/log/tune.log"),
    KillPoint(7, "the results table and plots at the end", glob="exp/RESULTS.md"),
)


def run_and_kill(recipe: Path, point: KillPoint, n: int, output: Path, args=()) -> None:
    """Start the recipe (with ``args``) in a process group of its own (its output to ``output``), and kill -9 the
    group at ``point``."""
    if point.glob:
        assert not point.reached(recipe, output), \
            f"kill point {n} ({point.what}) holds before the run starts: the kill points are out of order"
    with open(output, "w") as out:
        proc = subprocess.Popen(tiny_command(*args), cwd=recipe, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not point.reached(recipe, output):
            assert proc.poll() is None, (f"the run ended (code {proc.returncode}) before kill point {n} (stage "
                                         f"{point.stage}: {point.what}):\n{output.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"kill point {n} not reached in {RUN_TIMEOUT_S} s"
            time.sleep(POLL_S)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Nothing of the recipe runs on: not its jobs (run_local.py's guard stops them), nor anything under them.
    wait_for(lambda: not processes_in(recipe), 10,
             f"still running 10 s after kill point {n} (stage {point.stage}: {point.what}): {processes_in(recipe)}")


def check_nothing_half_written(recipe: Path, where: str) -> None:
    """Every file under its final name is whole: tables read to their last entry, models load, YAML parses.
    (Temporaries may be half-written: that is what they are for.)"""
    import torch

    for top in OUTPUT_FOLDERS:
        for path in sorted((recipe / top).rglob("*")):
            if any(TEMPORARY.search(part) for part in path.relative_to(recipe).parts) or not path.is_file():
                continue
            try:
                if path.suffix == ".scp" and ".ark:" in path.read_text():
                    ark_scp_values(path)
                elif path.suffix == ".pt":
                    torch.load(path, map_location="cpu", weights_only=False)
                elif path.suffix == ".yaml":
                    yaml.safe_load(path.read_text())
            except Exception as e:  # noqa: BLE001  (any failure to read is the finding)
                pytest.fail(f"{where}: {path.relative_to(recipe)} is not whole: {e}")


def leftovers(recipe: Path) -> list[str]:
    """Temporary names, and archives no table points at (what a killed run wrote under names of its own)."""
    found, arks, pointed = [], set(), set()
    for top in (*OUTPUT_FOLDERS, "fbank"):
        for path in (recipe / top).rglob("*"):
            if TEMPORARY.search(path.name):
                found.append(str(path.relative_to(recipe)))
            elif path.suffix == ".ark":
                arks.add(path.resolve())
            elif path.suffix == ".scp" and path.is_file():
                for line in path.read_text().splitlines():
                    if ".ark:" in line:
                        pointed.add(Path(line.split(maxsplit=1)[1].rsplit(":", 1)[0]).resolve())
    return sorted(found) + sorted(f"{p.relative_to(recipe.resolve())} (no table points at it)"
                                  for p in arks - pointed)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_at_every_stage_then_rerun_gives_the_uninterrupted_result(repo_root, tmp_path, tiny_digits_run):
    recipe = recipe_copy(repo_root, tmp_path / "digits")  # named as the reference: the records hold the name
    variants = add_variant_configs(recipe)  # and with its method variants
    stages = {p.stage for p in KILL_POINTS}
    assert len(KILL_POINTS) >= 10 and stages == set(range(8))
    left_by_kills = set()
    for n, point in enumerate(KILL_POINTS, start=1):
        run_and_kill(recipe, point, n, tmp_path / f"run.{n}.out", variants)
        check_nothing_half_written(recipe, f"after kill point {n} (stage {point.stage}: {point.what})")
        left_by_kills.update(leftovers(recipe))
    # The kills did leave temporaries (the synthesis folder of the first one at least), for the reruns to remove.
    assert any(name.startswith("downloads/.digits_tiny_seed1.tmp") for name in left_by_kills), left_by_kills
    proc = subprocess.run(tiny_command(*variants), cwd=recipe, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0 and "Successfully finished" in proc.stderr, proc.stderr[-4000:]

    assert leftovers(recipe) == []
    check_nothing_half_written(recipe, "after the final rerun")
    digest, reference = output_digest(recipe), tiny_digits_run.digest
    differ = sorted(k for k in set(digest) | set(reference) if digest.get(k) != reference.get(k))
    assert not differ, (f"{len(differ)} outputs differ from the uninterrupted run's (missing on one side, or "
                        f"another content): {differ[:40]}")
    # What the comparison covered (a digest that missed whole kinds of output would pass vacuously).
    for kind in ("data/train/feats.scp:", "data/lang_bpe50_train/tokens.txt", "data/lang_bpe50_train/bpe.model",
                 "exp/teacher/post_train/post.scp:", "exp/teacher/final.pt (bytes)",
                 "exp/student_kt_ft/final.pt (bytes)", "exp/student_scratch/decode_test/hyp.txt",
                 "exp/student_kt_reg/decode_lm_test/hyp.txt", "exp/results/student_kt_ft_lm.yaml",
                 "exp/teacher_layerwise/final.pt (bytes)", "exp/student_pkt_tli_ft/final.pt (bytes)",
                 "exp/results/student_pkt_tli_ft_lm.yaml"):
        assert any(k.startswith(kind) for k in digest), kind
