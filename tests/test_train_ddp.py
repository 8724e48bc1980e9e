"""Data-parallel training (asrkt.train.distributed): 2 CPU processes (gloo, through ``asrkt.bin.train --nproc 2``,
i.e. torchrun's launcher) against 1 process with the same global batch, on a tiny synthetic data dir.

Tolerance: the two runs compute the same gradients, but the ranks' partial sums are added in another order
(float32 per batch, then float64 over the ranks), so values differ by float rounding (~1e-7 relative per
step). Over 40 Adam steps this was measured at <= 1e-5 relative on every loss, and on the weights ~1e-6 on
average but up to 4e-4 for a few: Adam divides by the gradient's running RMS, so where a gradient is near zero
its rounding noise can move a weight by up to one step (lr = 3e-3). We allow 1e-3 relative on every loss,
1e-3 absolute on any weight and 1e-5 on their mean; a wrong normalisation (local instead of global counts, or
DDP's averaging left uncorrected) moves the losses by several percent.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asrkt.data.dataset import FrameBatchSampler, ShardedBatchSampler
from asrkt.models import load_model
from conftest import REPO_ROOT, make_data_dir
from test_train_data import add_features, make_lang, write_posteriors

REL_TOL = 1e-3
WEIGHT_TOL, MEAN_WEIGHT_TOL = 1e-3, 1e-5
EPOCHS = 5
KILL_AFTER = 3  # the interrupted run is killed as soon as this epoch's checkpoint appears (DILS inserted at 3)

# Relu DNN without dropout (dropout draws differ between 1 and 2 processes), a DILS layer inserted before epoch 3
# (a hook that replaces the model under DDP), the CTC and KD terms (normalised apart), batches of 1 to 5
# utterances (a 1-utterance batch gives rank 1 a stand-in).
CONFIG = f"""\
model:
  type: dnn
  dnn: {{hidden_layers: 1, hidden_units: 32, context: 1, dropout: 0.0}}
schedule: {{max_epochs: {EPOCHS}, min_epochs: {EPOCHS}}}
optim: {{lr: 0.003}}
batch: {{max_frames: 250}}
loss: {{kd_alpha: 0.5}}
hooks: [{{name: dils, at_epochs: [3]}}]
num_threads: 1
log_interval_s: 0
keep_checkpoints: 10
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """(argv without --exp-dir, work dir): 15 utterances of 48 to 148 frames, their lang dir and posteriors."""
    root = tmp_path_factory.mktemp("ddp")
    data = add_features(make_data_dir(root, num_speakers=3, utts_per_speaker=5))
    lang = make_lang(data, root / "lang")
    write_posteriors(data, root / "post", num_classes=len((lang / "tokens.txt").read_text().splitlines()))
    (root / "conf.yaml").write_text(CONFIG)
    argv = ["--config", str(root / "conf.yaml"), "--train-dir", str(data), "--valid-dir", str(data),
            "--lang-dir", str(lang), "--train-post", str(root / "post"), "--valid-post", str(root / "post")]
    return argv, root


def train_command(argv, exp: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "asrkt.bin.train", *argv, "--exp-dir", str(exp), "--nproc", str(nproc)]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_train(argv, exp: Path, nproc: int) -> str:
    res = subprocess.run(train_command(argv, exp, nproc), env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def history(exp: Path) -> list[dict]:
    """The summary rows at full precision (the newest training checkpoint holds them all)."""
    last = max((exp / "checkpoints").glob("epoch_*[0-9].pt"), key=lambda p: int(p.stem.split("_")[1]))
    return torch.load(last, map_location="cpu", weights_only=False)["history"]


def assert_same_run(a: Path, b: Path) -> None:
    ha, hb = history(a), history(b)
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb] == list(range(1, EPOCHS + 1))
    for ra, rb in zip(ha, hb):
        assert ra["decision"] == rb["decision"]
        for key in ("train_loss", "train_ctc", "train_kd", "valid_loss", "valid_ctc", "valid_kd", "valid_ter"):
            assert rb[key] == pytest.approx(ra[key], rel=REL_TOL), (ra["epoch"], key)
    ma, mb = load_model(a / "final.pt")[0].state_dict(), load_model(b / "final.pt")[0].state_dict()
    assert list(ma) == list(mb)  # no "module." prefix: DDP's checkpoints load in one process
    diffs = torch.cat([(ma[k] - mb[k]).abs().flatten() for k in ma])
    assert diffs.max() <= WEIGHT_TOL and diffs.mean() <= MEAN_WEIGHT_TOL, (diffs.max(), diffs.mean())


@pytest.fixture(scope="module")
def runs(recipe):
    """The same training in 1 process (in this one, through the CLI) and in 2 (--nproc 2)."""
    from asrkt.bin import train

    argv, root = recipe
    train.main(argv + ["--exp-dir", str(root / "one")])
    stderr = run_train(argv, root / "two", 2)
    return root / "one", root / "two", stderr


def test_two_processes_give_the_one_process_trajectory(runs):
    one, two, _ = runs
    assert_same_run(one, two)
    assert (two / "log" / "train.log").read_text().count("model replaced (dils: 1 -> 2 hidden layers") == 1


def test_only_rank_0_writes_logs_and_records(runs):
    _, two, stderr = runs
    log = (two / "log" / "train.log").read_text()
    assert "[rank 0] INFO: processes: 2 (torch.distributed" in log and "backend gloo" in log
    for text in (log, stderr):  # rank 1 may only warn (none here)
        assert not [line for line in text.splitlines() if "[rank 1]" in line and " INFO: " in line]
    assert stderr.count("finished after 5 epochs") == 1
    assert len((two / "summary.tsv").read_text().splitlines()) == EPOCHS + 1  # one writer
    assert "--nproc 2" in (two / "replay.sh").read_text()


def trainer_processes(exp: Path) -> list[int]:
    """Processes whose command line names ``exp`` (the launcher and its workers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(exp).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
def test_resume_after_kill_gives_the_uninterrupted_model(recipe, runs, tmp_path):
    argv, _ = recipe
    _, two, _ = runs
    exp = tmp_path / "killed"
    checkpoint = exp / "checkpoints" / f"epoch_{KILL_AFTER}.pt"
    for _ in range(3):  # (on a very busy machine the last epochs may end before the kill lands: try again)
        shutil.rmtree(exp, ignore_errors=True)
        proc = subprocess.Popen(train_command(argv, exp, 2), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = set(trainer_processes(exp)) - {proc.pid}
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher; its workers are in sessions of their own
        proc.wait()
        assert checkpoint.exists(), proc.stderr.read().decode()[-3000:]
        if not (exp / "train_info.yaml").exists():
            break
    assert not (exp / "train_info.yaml").exists(), "the run finished before it was killed: nothing to resume"
    assert len(workers) == 2
    time.sleep(1.0)  # the workers die with their launcher (PR_SET_PDEATHSIG): nothing races the rerun
    assert not workers & set(trainer_processes(exp)), "workers outlived their killed launcher"
    done = sorted(int(p.stem.split("_")[1]) for p in (exp / "checkpoints").glob("epoch_*[0-9].pt"))
    assert KILL_AFTER <= done[-1] < EPOCHS, f"epoch {done[-1]} was saved after the kill: the workers went on"
    in_one = tmp_path / "resumed_in_one_process"
    shutil.copytree(exp, in_one)

    stderr = run_train(argv, exp, 2)  # the plain rerun
    assert f"resumed from {exp}/checkpoints/epoch_{done[-1]}.pt" in stderr
    assert_same_run(two, exp)
    ma, mb = load_model(two / "final.pt")[0].state_dict(), load_model(exp / "final.pt")[0].state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)  # the same computation: bit for bit

    from asrkt.bin import train  # and a DDP checkpoint resumes in one process

    train.main(argv + ["--exp-dir", str(in_one)])
    assert_same_run(two, in_one)


def test_sharded_sampler_splits_every_batch_exactly_once():
    lengths = [48, 73, 98, 123, 148] * 3
    base = FrameBatchSampler(lengths, max_frames=250, shuffle=True, seed=3, length_jitter=0.1)
    base.set_epoch(2)
    shards = [ShardedBatchSampler(FrameBatchSampler(lengths, max_frames=250, shuffle=True, seed=3,
                                                    length_jitter=0.1), rank, 2) for rank in range(2)]
    for s in shards:
        s.set_epoch(2)
    parts = [list(s) for s in shards]
    assert len(parts[0]) == len(parts[1]) == len(base) == len(shards[0])
    standins = 0
    for i, batch in enumerate(base.batches()):
        real = [parts[r][i] for r in range(2) if not shards[r].is_standin(i)]
        assert sorted(sum(real, [])) == sorted(batch)  # every utterance once, on one rank
        assert not shards[0].is_standin(i)
        if shards[1].is_standin(i):
            standins += 1
            assert len(batch) == 1 and parts[1][i] == batch  # a stand-in is a real utterance (weight 0)
    assert standins == 3  # the three 148-frame utterances have a batch each


def test_a_bad_utterance_skips_the_batch_on_every_rank(recipe, tmp_path):
    """NaN features in one utterance: every rank skips that batch (no rank waits for another), the rank holding
    it names it in train.log (a rank other than 0 writes warnings only), and the result is the one-process one."""
    from asrkt.bin import train

    argv, root = recipe
    noisy = add_features(make_data_dir(tmp_path, num_speakers=3, utts_per_speaker=5), nan_utt="spk1-u2")
    argv = list(argv)
    argv[argv.index("--train-dir") + 1] = str(noisy)  # (the dev set stays clean)
    argv += ["--schedule.max-epochs", "1", "--schedule.min-epochs", "1", "--max-bad-batch-fraction", "0.3"]
    train.main(argv + ["--exp-dir", str(tmp_path / "one")])
    run_train(argv, tmp_path / "two", 2)
    (one,), (two,) = history(tmp_path / "one"), history(tmp_path / "two")
    assert one["bad_batches"] == two["bad_batches"] == 1
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=REL_TOL)
    log = (tmp_path / "two" / "log" / "train.log").read_text().splitlines()
    named = [line for line in log if "skipped: loss nan (non-finite features in utterance(s) spk1-u2" in line]
    assert len(named) == 1 and " WARNING: " in named[0]
    assert sum(" 1 of " in line and "batches skipped" in line for line in log) == 1  # the epoch's count, rank 0


def test_a_run_that_fails_in_its_processes_ends_with_one_line_naming_them(recipe, tmp_path):
    """Every rank refuses the epoch (a NaN utterance, no bad batch allowed): each process prints its own error
    naming the utterance, and the launcher ends with one line saying how many processes failed and where the
    log is; exit status 1."""
    argv, root = recipe
    noisy = add_features(make_data_dir(tmp_path, num_speakers=3, utts_per_speaker=5), nan_utt="spk1-u2")
    argv = list(argv)
    argv[argv.index("--train-dir") + 1] = str(noisy)
    argv += ["--schedule.max-epochs", "1", "--schedule.min-epochs", "1", "--max-bad-batch-fraction", "0"]
    exp = tmp_path / "two"
    res = subprocess.run(train_command(argv, exp, 2), env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == (f"ERROR: training failed in 2 of 2 processes (rank 0: exit code 1); the processes' errors are "
                    f"above and in {exp / 'log' / 'train.log'}"), res.stderr[-3000:]
    assert "non-finite features in utterance(s) spk1-u2" in res.stderr  # what the processes said, above it
    assert not (exp / "final.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be an integer >= 1 and --ngpu one >= 0, got '0' and '0'"),
    (["--ngpu", "x"], "--nproc must be an integer >= 1 and --ngpu one >= 0, got '1' and 'x'"),
    (["--ngpu", "2", "--nproc", "3"], "--ngpu 2 starts one training process per GPU: leave --nproc out (got --nproc 3)"),
])
def test_bad_recipe_ddp_options_are_one_error_line(repo_root, tmp_path, args, message):
    from recipe_helpers import recipe_copy

    recipe = recipe_copy(repo_root, tmp_path / "digits")
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"ERROR: {message}" in proc.stderr, proc.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()
