"""run_local.py's jobs die with the recipe: a kill -9 of the recipe's process group, or of run_local.py alone,
stops every job and the processes under it (issue 16: they used to run on in their own sessions and race the
rerun). Ctrl-C and SIGTERM are covered in test_shell_launcher.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import alive, processes_in, wait_for

RUN_LOCAL = Path(__file__).resolve().parents[1] / "egs" / "TEMPLATE" / "utils" / "run_local.py"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

# A job with a child of its own: each writes its pid, then both sleep.
JOB = """echo $$ > "$1.job"
sleep 300 &
echo $! > "$1.child"
wait
"""
# The recipe: run_local.py in the background (its pid noted), then waiting for it, as kt.sh's training does.
RECIPE = f"""{RUN_LOCAL} JOB=1:2 log/job.JOB.log bash job.sh pids/JOB &
echo $! > launcher.pid
wait $!
"""


def start_recipe(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """Start the recipe in a process group of its own; return it and the pids of the jobs and their children."""
    (tmp_path / "job.sh").write_text(JOB)
    (tmp_path / "pids").mkdir()
    recipe = subprocess.Popen(["bash", "-c", RECIPE], cwd=tmp_path, env=ENV, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = [tmp_path / "pids" / f"{j}.{kind}" for j in (1, 2) for kind in ("job", "child")]
    wait_for(lambda: all(f.is_file() and f.read_text().strip() for f in files), 30, "the jobs did not start")
    pids = [int(f.read_text()) for f in files]
    assert all(alive(p) for p in pids)
    return recipe, pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("victim", ["recipe process group", "run_local.py alone"])
def test_jobs_and_their_children_die_when_the_recipe_is_killed(tmp_path, victim):
    recipe, pids = start_recipe(tmp_path)
    try:
        if victim == "recipe process group":
            os.killpg(recipe.pid, signal.SIGKILL)
        else:
            os.kill(int((tmp_path / "launcher.pid").read_text()), signal.SIGKILL)
        recipe.wait(timeout=10)
        wait_for(lambda: not any(alive(p) for p in pids), 5,
                 f"job processes still alive 5 s after the kill: {[p for p in pids if alive(p)]}")
        if victim == "run_local.py alone":  # the recipe sees its launcher fail
            assert recipe.returncode == 128 + signal.SIGKILL
    finally:
        for p in pids:  # never leave sleepers behind, whatever failed
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if recipe.poll() is None:
            os.killpg(recipe.pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_finished_run_leaves_no_guard_process(tmp_path):
    proc = subprocess.run([str(RUN_LOCAL), "JOB=1:3", "log/x.JOB.log", "echo", "JOB"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [(tmp_path / "log" / f"x.{j}.log").read_text().splitlines()[2] for j in (1, 2, 3)] == ["1", "2", "3"]
    wait_for(lambda: not processes_in(tmp_path, "job_guard.py"), 5, "the guard process outlived the run")


def test_the_guard_stops_the_groups_still_listed_when_its_pipe_closes():
    """job_guard.py itself: SIGTERM to the groups registered and not ended, SIGKILL to one that ignores it, and
    nothing to a group whose end was reported."""
    def group(script: str) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-c", script], start_new_session=True)

    plain, stubborn, ended = group("sleep 60"), group('trap "" TERM; sleep 60 & wait'), group("sleep 60")
    guard = subprocess.Popen([sys.executable, "-S", str(RUN_LOCAL.with_name("job_guard.py"))], stdin=subprocess.PIPE)
    try:
        guard.communicate(f"+{plain.pid}\n+{stubborn.pid}\n+{ended.pid}\n-{ended.pid}\n".encode(), timeout=30)
        assert guard.returncode == 0
        assert plain.wait(timeout=5) == -signal.SIGTERM and stubborn.wait(timeout=5) == -signal.SIGKILL
        assert ended.poll() is None
    finally:
        for p in (plain, stubborn, ended):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
