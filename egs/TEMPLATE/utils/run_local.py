#!/usr/bin/env python3
"""Run a command, or an array of jobs, on this machine: Kaldi's run.pl semantics (standard library only).

Usage: run_local.py [options] [JOB=1:N] <log-file> <command> [<arg>...]

  JOB=1:N   run N jobs (any identifier works: SPLIT=1:4; JOB=3 runs only job 3). Every occurrence of the
            identifier in the log-file name and in the command's arguments is replaced by the job id.
  Each job runs as `bash -o pipefail -c '<command>'` with stdin from /dev/null and stdout+stderr appended to
  its own log, which starts with "# <command>" and "# Started at <date>" and ends with
  "# Accounting: time=<seconds> threads=<n>" and "# Ended (code <status>) at <date>".
  Arguments are shell-quoted, except for bare shell operators (| || && ; > >> < 2> 2>&1 ...), so that
      run_local.py JOB=1:4 log/x.JOB.log gunzip -c in.JOB.gz \\| wc -l \\> out.JOB.txt
  runs a pipeline. pipefail (unlike run.pl) makes a pipeline fail when any of its commands fails.

Options:
  --max-jobs-run N   at most N jobs at once (default: the number of CPUs available to this process)
  --num-threads N    threads per job; only recorded in the log's Accounting line here
  --mem M, --time T, --gpu G, --partition P
                     accepted so that cmd.sh can switch between run_local.py and run_slurm.py; ignored here

If any job fails: "run_local.py: K / N failed, log is in <log of the first failed job>" and the last 20 lines of
that log on stderr, exit status 1 (after all jobs have finished). Ctrl-C or SIGTERM kills the running jobs.
Each job runs in a session of its own (so that stopping it stops its whole tree); a guard process (job_guard.py)
stops them when run_local.py dies in any other way (kill -9 of it or of the recipe's process group), so that no
job outlives the recipe and races its rerun.
"""
from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Options taking a value; the same set for every launcher, so cmd.sh can swap them.
OPTIONS = ("--max-jobs-run", "--num-threads", "--mem", "--time", "--gpu", "--partition")
JOB_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
# Passed to bash unquoted so that escaped operators on the command line build pipelines and redirections.
SHELL_OPERATORS = frozenset(
    ["|", "||", "&&", ";", "&", "|&", "(", ")", "<", ">", ">>", "2>", "2>>", "&>", "&>>", "2>&1", ">&2", "1>&2"]
)
TAIL_LINES = 20


class UsageError(Exception):
    """A bad launcher invocation; the message names the problem."""


@dataclass
class Request:
    """A parsed launcher command line."""

    log: str  # log-file name, may contain `jobvar`
    command: list[str]  # the command and its arguments, may contain `jobvar`
    jobvar: str | None = None  # e.g. "JOB"; None for a single job without JOB=
    start: int = 1
    end: int = 1
    options: dict[str, str] = field(default_factory=dict)

    @property
    def job_ids(self) -> list[int | None]:
        return list(range(self.start, self.end + 1)) if self.jobvar else [None]

    def int_option(self, name: str, default: int) -> int:
        value = self.options.get(name)
        if value is None:
            return default
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{name} expects a positive integer, got '{value}'")
        return int(value)


def usage_line(prog: str) -> str:
    return f"usage: {prog} [options] [JOB=1:N] <log-file> <command> [<arg>...]  (see {prog} --help)"


def parse_args(argv: list[str], prog: str = "run_local.py") -> Request:
    """Parse `[options] [JOB=a:b] [options] log command...` (options and JOB= may interleave, as in run.pl)."""
    options: dict[str, str] = {}
    jobvar, start, end = None, 1, 1
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            if "=" in arg:
                raise UsageError(f"options are written '--name value', not '{arg}'")
            if name not in OPTIONS:
                raise UsageError(f"unknown option '{arg}' (known: {' '.join(OPTIONS)})")
            if i + 1 >= len(argv):
                raise UsageError(f"option {arg} needs a value")
            options[arg] = argv[i + 1]
            i += 2
            continue
        m = JOB_SPEC.match(arg)
        if m and jobvar is None:
            jobvar, start = m.group(1), int(m.group(2))
            end = int(m.group(3)) if m.group(3) is not None else start
            if end < start:
                raise UsageError(f"empty job range '{arg}': {end} < {start}")
            i += 1
            continue
        break
    rest = argv[i:]
    if len(rest) < 2:
        raise UsageError("need a log file and a command\n" + usage_line(prog))
    req = Request(log=rest[0], command=rest[1:], jobvar=jobvar, start=start, end=end, options=options)
    if jobvar and end > start and jobvar not in req.log:
        raise UsageError(f"{end - start + 1} jobs would write the same log '{req.log}': put {jobvar} in its name")
    req.int_option("--max-jobs-run", 1)
    req.int_option("--num-threads", 1)
    return req


def quote_command(args: list[str]) -> str:
    """One bash command line from argv-style arguments; bare shell operators stay operators."""
    return " ".join(a if a in SHELL_OPERATORS else shlex.quote(a) for a in args)


def substitute(text: str, jobvar: str | None, job_id: int | None) -> str:
    return text if jobvar is None or job_id is None else text.replace(jobvar, str(job_id))


def job_log_and_command(req: Request, job_id: int | None) -> tuple[str, str]:
    """The log path and the quoted command line of one job."""
    args = [substitute(a, req.jobvar, job_id) for a in req.command]
    return substitute(req.log, req.jobvar, job_id), quote_command(args)


def date_string() -> str:
    """Like date(1)'s default output."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def log_tail(path: str, n: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(collections.deque((line.rstrip("\n") for line in f), maxlen=n))
    except OSError as e:
        return [f"(cannot read {path}: {e.strerror})"]


def report_failure(prog: str, failed_logs: list[str], num_jobs: int, extra: list[str] = ()) -> None:
    """Kaldi's one-line summary, then the tail of the first failed job's log (and of `extra` files)."""
    first = failed_logs[0]
    lines = [f"{prog}: {len(failed_logs)} / {num_jobs} failed, log is in {first}",
             f"---- last {TAIL_LINES} lines of {first} ----", *log_tail(first)]
    for path in extra:
        if os.path.exists(path):
            lines += [f"---- last {TAIL_LINES} lines of {path} ----", *log_tail(path)]
    print("\n".join(lines), file=sys.stderr, flush=True)


def default_max_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class JobGuard:
    """Stops the jobs when this launcher dies, however it dies (kill -9 of it or of the recipe's process group).

    The jobs run in sessions of their own, which a kill of the recipe's process group does not reach. So a guard
    process (job_guard.py, beside this file), in a session of its own, follows them on a pipe: each job's shell
    writes its process group there as its first act (`register`), and we write when the job has ended. When the
    pipe closes (we are gone, and no job is being started) the guard stops the groups still running. Not
    prctl(PR_SET_PDEATHSIG): that reaches only the job's shell, not the tree under it, and fires when the
    thread that started the job ends.
    """

    def __init__(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "job_guard.py")
        # -S: no site packages to import, the guard only needs the standard library (a fast start)
        self.proc = subprocess.Popen([sys.executable, "-S", script], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        self.fd = self.proc.stdin.fileno()

    def register(self, cmd: str) -> str:
        """``cmd`` preceded by the job's registration: the job's shell writes "+<its pid>" (its process group) to
        the guard, then closes the pipe. It inherits the pipe from its fork on, so it is seen even when we die
        before Popen returns. (Quiet and harmless when the guard is gone.)"""
        return f'trap "" PIPE; echo "+$$" >&{self.fd} 2> /dev/null; exec {self.fd}>&-; trap - PIPE; {cmd}'

    def ended(self, pgid: int) -> None:
        try:
            self.proc.stdin.write(f"-{pgid}\n".encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):  # the guard is gone (killed by hand): the jobs still run
            pass

    def close(self) -> None:
        """Called when every job has ended: the guard finds nothing to stop and exits (not waited for: that
        would add its start-up time to every launcher call)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass


class LocalRunner:
    """Runs the jobs of a Request, at most `max_jobs` at a time, each in its own process group."""

    def __init__(self, req: Request):
        self.req = req
        self.max_jobs = req.int_option("--max-jobs-run", default_max_jobs())
        self.threads = req.int_option("--num-threads", 1)
        self._lock = threading.Lock()
        self._running: dict[int | None, subprocess.Popen] = {}
        self._stopped = False
        self._guard: JobGuard | None = None

    def run_job(self, job_id: int | None) -> tuple[str, int | None]:
        """Run one job; returns (log, exit status), status None when it was never started."""
        log, cmd = job_log_and_command(self.req, job_id)
        with self._lock:
            if self._stopped:
                return log, None
            os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
            f = open(log, "w", encoding="utf-8")
            f.write(f"# {cmd}\n# Started at {date_string()}\n")
            f.flush()
            t0 = time.monotonic()
            # A new session per job: Ctrl-C reaches only us, and we kill each job's whole process tree.
            proc = subprocess.Popen(["bash", "-o", "pipefail", "-c", self._guard.register(cmd)],
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=(self._guard.fd,))
            self._running[job_id] = proc
        code = proc.wait()
        if code < 0:  # killed by a signal: report it as bash would
            code = 128 - code
        with self._lock:
            del self._running[job_id]
            self._guard.ended(proc.pid)
        f.write(f"# Accounting: time={round(time.monotonic() - t0)} threads={self.threads}\n")
        f.write(f"# Ended (code {code}) at {date_string()}\n")
        f.close()
        return log, code

    def stop(self) -> None:
        """Start no more jobs and kill the running ones."""
        with self._lock:
            self._stopped = True
            for proc in self._running.values():
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> list[tuple[str, int | None]]:
        ids = self.req.job_ids
        self._guard = JobGuard()
        try:
            with ThreadPoolExecutor(max_workers=min(self.max_jobs, len(ids))) as pool:
                futures = [pool.submit(self.run_job, j) for j in ids]
                try:
                    return [fut.result() for fut in futures]
                except BaseException:
                    self.stop()
                    raise
        finally:  # (the pool has waited for every job)
            self._guard.close()


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    prog = "run_local.py"
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    try:
        req = parse_args(argv, prog)
        runner = LocalRunner(req)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        results = runner.run()
    except Interrupted as e:
        print(f"{prog}: interrupted by signal {e.signum}: killed the running jobs", file=sys.stderr)
        return 128 + e.signum
    except OSError as e:  # e.g. the log directory cannot be created
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    failed = [log for log, code in results if code != 0]
    if failed:
        report_failure(prog, failed, len(results))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
