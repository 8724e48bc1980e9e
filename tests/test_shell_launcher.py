"""egs/TEMPLATE/utils/run_local.py (run.pl semantics) and run_slurm.py (sbatch command and job script)."""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipe_helpers import alive

REPO_ROOT = Path(__file__).resolve().parents[1]
UTILS = REPO_ROOT / "egs" / "TEMPLATE" / "utils"
RUN_LOCAL = UTILS / "run_local.py"
RUN_SLURM = UTILS / "run_slurm.py"


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need it; run_slurm then imports this same run_local
    sys.path.insert(0, str(path.parent))  # run_slurm imports its sibling run_local
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


run_local = load("run_local", RUN_LOCAL)
run_slurm = load("run_slurm", RUN_SLURM)


# This interpreter's folder first on PATH, as path.sh puts the venv's (and a pyenv shim costs ~0.3 s a start).
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def launch(cwd: Path, *args: str, script: Path = RUN_LOCAL, timeout: float = 60) -> subprocess.CompletedProcess:
    # Called as an executable, as cmd.sh does: the shebang and the executable bit are part of the contract.
    return subprocess.run([str(script), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines()


def check_log_frame(lines: list[str], command: str, code: int) -> list[str]:
    """Check the header and footer lines; return the job's own output lines."""
    assert lines[0] == f"# {command}"
    assert re.fullmatch(r"# Started at .*\d{4}", lines[1]), lines[1]
    assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[-2]), lines[-2]
    assert re.fullmatch(rf"# Ended \(code {code}\) at .*\d{{4}}", lines[-1]), lines[-1]
    return lines[2:-2]


# ---------------------------------------------------------------- run_local.py


def test_job_array_writes_one_log_per_job_with_substituted_ids(tmp_path):
    proc = launch(tmp_path, "JOB=1:3", "exp/log/demo.JOB.log", "echo", "job", "JOB", "of", "data/split3/JOB")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    logs = sorted((tmp_path / "exp" / "log").iterdir())
    assert [p.name for p in logs] == ["demo.1.log", "demo.2.log", "demo.3.log"]
    for i, path in enumerate(logs, start=1):
        out = check_log_frame(read_log(path), f"echo job {i} of data/split3/{i}", 0)
        assert out == [f"job {i} of data/split3/{i}"]


def test_any_job_variable_name_and_range(tmp_path):
    proc = launch(tmp_path, "SPLIT=4:5", "log/x.SPLIT.log", "echo", "SPLIT")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["x.4.log", "x.5.log"]
    assert read_log(tmp_path / "log" / "x.5.log")[2] == "5"


def test_single_job_without_job_variable(tmp_path):
    proc = launch(tmp_path, "log/one.log", "echo", "JOB", "stays")
    assert proc.returncode == 0, proc.stderr
    assert check_log_frame(read_log(tmp_path / "log" / "one.log"), "echo JOB stays", 0) == ["JOB stays"]


def test_single_job_id(tmp_path):
    proc = launch(tmp_path, "JOB=7", "log/x.JOB.log", "echo", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert read_log(tmp_path / "log" / "x.7.log")[2] == "7"


def test_arguments_are_quoted_and_operators_are_kept(tmp_path):
    args = ["printf", "%s\\n", "a b", "$HOME", "it's", '"q"', "*", "x;y", "|", "tr", "a-z", "A-Z", ">",
            "out.JOB.txt"]
    proc = launch(tmp_path, "JOB=1:1", "log/q.JOB.log", *args)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.1.txt").read_text().splitlines() == ["A B", "$HOME", "IT'S", '"Q"', "*", "X;Y"]
    # The logged command, run again by bash, does the same.
    command = read_log(tmp_path / "log" / "q.1.log")[0][2:]
    subprocess.run(["bash", "-c", command.replace("out.1.txt", "again.txt")], cwd=tmp_path, check=True)
    assert (tmp_path / "again.txt").read_text() == (tmp_path / "out.1.txt").read_text()


def test_stderr_goes_to_the_log_and_stdin_is_empty(tmp_path):
    proc = launch(tmp_path, "log/e.log", "bash", "-c", "echo to-stderr >&2; cat; echo done")
    assert proc.returncode == 0, proc.stderr
    assert check_log_frame(read_log(tmp_path / "log" / "e.log"), "bash -c 'echo to-stderr >&2; cat; echo done'",
                           0) == ["to-stderr", "done"]


def test_a_failing_job_fails_the_run_and_prints_its_log_tail(tmp_path):
    script = "for i in $(seq 1 30); do echo line$i-JOB; done; [ JOB -ne 2 ] || exit 3"
    proc = launch(tmp_path, "JOB=1:3", "log/f.JOB.log", "bash", "-c", script)
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first == "run_local.py: 1 / 3 failed, log is in log/f.2.log"
    # The last 20 lines of the failed job's log: its last 18 output lines and the footer.
    assert "line13-2" in proc.stderr and "line30-2" in proc.stderr and "line12-2" not in proc.stderr
    assert "# Ended (code 3)" in proc.stderr
    # The other jobs ran to the end.
    assert read_log(tmp_path / "log" / "f.3.log")[-1].startswith("# Ended (code 0)")
    lines = read_log(tmp_path / "log" / "f.2.log")
    check_log_frame(lines, f"bash -c {run_local.shlex.quote(script.replace('JOB', '2'))}", 3)


def test_failure_count_and_first_failed_log(tmp_path):
    proc = launch(tmp_path, "JOB=1:4", "log/f.JOB.log", "[", "JOB", "-le", "2", "]")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "run_local.py: 2 / 4 failed, log is in log/f.3.log"


def test_failing_pipeline_fails(tmp_path):
    # pipefail: a failure early in a pipeline is not hidden by the last command.
    proc = launch(tmp_path, "log/p.log", "false", "|", "cat")
    assert proc.returncode == 1
    assert read_log(tmp_path / "log" / "p.log")[-1].startswith("# Ended (code 1)")


def test_missing_command_exit_code_127(tmp_path):
    proc = launch(tmp_path, "log/m.log", "no-such-command-asrkt")
    assert proc.returncode == 1
    assert "command not found" in proc.stderr
    assert "# Ended (code 127)" in proc.stderr


def test_max_jobs_run_1_runs_one_job_at_a_time(tmp_path):
    # Each job marks itself running, waits, and counts the jobs running with it.
    script = "touch running.JOB; sleep 0.2; ls running.* | wc -l; rm running.JOB"
    proc = launch(tmp_path, "--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log", "bash", "-c", script)
    assert proc.returncode == 0, proc.stderr
    for i in (1, 2, 3):
        assert read_log(tmp_path / "log" / f"s.{i}.log")[2].strip() == "1"


def test_jobs_run_in_parallel(tmp_path):
    # A barrier: every job waits (up to 20 s) until all three are running, which needs 3 at once.
    script = ("touch running.JOB; for i in $(seq 200); do [ $(ls running.* | wc -l) -eq 3 ] && exit 0; "
              "sleep 0.1; done; exit 1")
    proc = launch(tmp_path, "--max-jobs-run", "3", "JOB=1:3", "log/b.JOB.log", "bash", "-c", script)
    assert proc.returncode == 0, proc.stderr


def test_options_after_the_job_range(tmp_path):
    proc = launch(tmp_path, "JOB=1:2", "--num-threads", "4", "--gpu", "1", "log/o.JOB.log", "true")
    assert proc.returncode == 0, proc.stderr
    assert read_log(tmp_path / "log" / "o.1.log")[-2].endswith("threads=4")


@pytest.mark.parametrize("args, message", [
    (["--max-jobs-run=2", "l", "true"], "options are written '--name value', not '--max-jobs-run=2'"),
    (["--bogus", "1", "l", "true"], "unknown option '--bogus'"),
    (["--max-jobs-run", "0", "l", "true"], "--max-jobs-run expects a positive integer, got '0'"),
    (["--num-threads", "x", "l", "true"], "--num-threads expects a positive integer, got 'x'"),
    (["JOB=1:3", "log/same.log", "true"], "3 jobs would write the same log 'log/same.log': put JOB in its name"),
    (["JOB=3:1", "log/x.JOB.log", "true"], "empty job range 'JOB=3:1'"),
    (["JOB=1:2", "log/x.JOB.log"], "need a log file and a command"),
    (["--mem"], "option --mem needs a value"),
])
def test_usage_errors(tmp_path, args, message):
    proc = launch(tmp_path, *args)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (tmp_path / "log").exists()


def test_unwritable_log_dir(tmp_path):
    (tmp_path / "file").write_text("")
    proc = launch(tmp_path, "file/x.log", "true")
    assert proc.returncode == 1
    assert "file" in proc.stderr and "run_local.py:" in proc.stderr


def test_help():
    proc = launch(REPO_ROOT, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Run a command")


def test_sigterm_kills_running_jobs(tmp_path):
    proc = subprocess.Popen([str(RUN_LOCAL), "JOB=1:2", "log/k.JOB.log", "bash", "-c", "echo $$ > pid.JOB; sleep 60"],
                            cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    deadline = time.monotonic() + 20
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted" in err
    for p in pid_files:
        pid = int(p.read_text())
        deadline = time.monotonic() + 5
        while alive(pid):
            assert time.monotonic() < deadline, f"job process {pid} survived"
            time.sleep(0.05)




def test_quote_command():
    assert run_local.quote_command(["a", "b c", "|", "d", "'", "2>&1"]) == "a 'b c' | d ''\"'\"'' 2>&1"


# ---------------------------------------------------------------- run_slurm.py


def test_sbatch_command_for_an_array():
    req = run_slurm.parse_args(["--mem", "4G", "--time", "1:00:00", "--gpu", "1", "--partition", "gpu",
                                "--num-threads", "2", "--max-jobs-run", "3", "JOB=1:10", "exp/t/log/train.JOB.log",
                                "python", "-m", "x"], "run_slurm.py")
    script, output = run_slurm.queue_paths(req)
    assert (script, output) == ("exp/t/log/q/train.sh", "exp/t/log/q/train.%a.out")
    cmd = run_slurm.sbatch_command(req, script, output, "/recipe")
    assert cmd[:3] == ["sbatch", "--wait", "--parsable"]
    assert cmd[-1] == script
    assert set(cmd[3:-1]) == {"--job-name=train", "--output=exp/t/log/q/train.%a.out", "--export=ALL",
                              "--chdir=/recipe", "--array=1-10%3", "--cpus-per-task=2", "--mem=4G",
                              "--time=1:00:00", "--partition=gpu", "--gres=gpu:1"}


def test_sbatch_command_for_a_single_job_has_no_array():
    req = run_slurm.parse_args(["--gpu", "0", "exp/log/score.log", "true"], "run_slurm.py")
    script, output = run_slurm.queue_paths(req)
    assert output == "exp/log/q/score.out"
    cmd = run_slurm.sbatch_command(req, script, output, "/r")
    assert cmd == ["sbatch", "--wait", "--parsable", "--job-name=score", "--output=exp/log/q/score.out",
                   "--export=ALL", "--chdir=/r", "exp/log/q/score.sh"]


def test_sbatch_command_rejects_a_bad_gpu_count():
    req = run_slurm.parse_args(["--gpu", "all", "l", "true"], "run_slurm.py")
    with pytest.raises(run_slurm.UsageError, match="--gpu expects a number of GPUs, got 'all'"):
        run_slurm.sbatch_command(req, "s", "o", "/")


def test_job_script_runs_a_task_like_run_local(tmp_path):
    """The generated script is plain bash: run it as Slurm would for array task 2 and read the log."""
    req = run_slurm.parse_args(["--num-threads", "2", "JOB=1:3", "log/t.JOB.log", "printf", "%s\\n", "id JOB",
                                "it's", "|", "tr", "a-z", "A-Z"], "run_slurm.py")
    script = tmp_path / "job.sh"
    script.write_text(run_slurm.job_script(req, "run_slurm.py ..."))
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="2", SLURM_JOB_ID="77")
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = read_log(tmp_path / "log" / "t.2.log")
    # Same command line as run_local.py would run and log for job 2.
    assert lines[0] == "# " + run_local.job_log_and_command(req, 2)[1]
    assert re.fullmatch(r"# Running on .* \(Slurm job 77\)", lines[2])
    assert lines[3:5] == ["ID 2", "IT'S"]
    assert re.fullmatch(r"# Accounting: time=\d+ threads=2", lines[-2])
    assert lines[-1].startswith("# Ended (code 0) at ")
    assert run_slurm.log_exit_code(str(tmp_path / "log" / "t.2.log")) == 0


def test_job_script_reports_the_failure_code(tmp_path):
    req = run_slurm.parse_args(["log/s.log", "exit", "5"], "run_slurm.py")
    script = tmp_path / "job.sh"
    script.write_text(run_slurm.job_script(req, "run_slurm.py log/s.log exit 5"))
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 5
    assert run_slurm.log_exit_code(str(tmp_path / "log" / "s.log")) == 5


def test_job_script_needs_the_array_task_id(tmp_path):
    req = run_slurm.parse_args(["JOB=1:2", "log/t.JOB.log", "true"], "run_slurm.py")
    script = tmp_path / "job.sh"
    script.write_text(run_slurm.job_script(req, "x"))
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "not running as a Slurm array task" in proc.stderr


def test_log_exit_code_of_killed_or_missing_task(tmp_path):
    killed = tmp_path / "killed.log"
    killed.write_text("# cmd\n# Started at x\nworking\n")
    assert run_slurm.log_exit_code(str(killed)) is None
    assert run_slurm.log_exit_code(str(tmp_path / "absent.log")) is None


def test_run_slurm_without_slurm_says_so(tmp_path):
    # A PATH with python3 and no Slurm (this machine may have Slurm: tests/test_slurm_cluster.py uses it).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([str(RUN_SLURM), "JOB=1:2", "log/x.JOB.log", "true"], cwd=work,
                          env=dict(ENV, PATH=str(bin_dir)), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr == "run_slurm.py: sbatch not found: this machine has no Slurm; use run_local.py in cmd.sh\n"
    assert not (work / "log").exists()
