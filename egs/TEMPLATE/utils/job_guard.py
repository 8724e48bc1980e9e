#!/usr/bin/env python3
"""The guard of run_local.py's jobs: stops them when run_local.py dies (internal; standard library only, and
nothing else imported, so that it starts fast).

run_local.py runs each job in a session of its own, so that stopping a job stops the whole tree under it; a
kill -9 of the recipe's process group does not reach those sessions, and a SIGKILLed run_local.py cannot stop
them. This process, in a session of its own too, reads lines on stdin, a pipe whose write end only
run_local.py and the jobs being started hold:
  +PGID   written by a job's shell as its first act (it then closes the pipe and runs the job's command)
  -PGID   written by run_local.py once that job has ended
stdin closes when run_local.py has exited, normally or not; since a job holds the write end from its fork until
it has written its line, no job can start unseen. The groups still listed are then stopped: SIGTERM, then
SIGKILL to what is left after GRACE_S.
"""
import os
import signal
import sys
import time

GRACE_S = 2.0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the number now someone else's: not ours to stop
        return False
    return True


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of run_local.py stops us
    pgids = set()
    for line in sys.stdin.buffer:
        op, pgid = line[:1], int(line[1:])
        if op == b"+":
            pgids.add(pgid)
        else:
            pgids.discard(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pgids = {p for p in pgids if group_alive(p)}
        for pgid in pgids:
            os.killpg(pgid, sig)
        deadline = time.monotonic() + GRACE_S
        while pgids and time.monotonic() < deadline:
            time.sleep(0.02)
            pgids = {p for p in pgids if group_alive(p)}
    return 0


if __name__ == "__main__":
    sys.exit(main())
