"""egs/TEMPLATE/utils/log.sh: log/die with the caller's place, and the stage/.done helpers."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_SH = REPO_ROOT / "egs" / "TEMPLATE" / "utils" / "log.sh"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


def run_script(tmp_path: Path, body: str, name: str = "demo.sh") -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(f"set -euo pipefail\n. {LOG_SH}\n{body}")
    return subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30)


def test_log_names_file_line_and_function(tmp_path):
    proc = run_script(tmp_path, 'log "at top"\nf() {\n  log "in f" with words\n}\nf\n')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    top, inner = proc.stderr.splitlines()
    assert re.fullmatch(STAMP + r" \(demo\.sh:3:main\) at top", top), top
    assert re.fullmatch(STAMP + r" \(demo\.sh:5:f\) in f with words", inner), inner


def test_log_keeps_special_characters(tmp_path):
    proc = run_script(tmp_path, "log 'a\\nb %s $x'\n")
    assert proc.stderr.rstrip("\n").endswith(") a\\nb %s $x")


def test_die_logs_the_caller_and_exits_1(tmp_path):
    proc = run_script(tmp_path, 'g() {\n  die "no such file data/x/text"\n}\ng\necho not reached\n')
    assert proc.returncode == 1
    assert "not reached" not in proc.stdout
    assert re.fullmatch(STAMP + r" \(demo\.sh:4:g\) ERROR: no such file data/x/text\n", proc.stderr), proc.stderr


def test_stage_begin_and_end(tmp_path):
    proc = run_script(tmp_path, 'stage_begin 3 "teacher DNN: data/train -> exp/teacher"\nsleep 1\nstage_end\n')
    assert proc.returncode == 0, proc.stderr
    begin, end = proc.stderr.splitlines()
    assert re.fullmatch(STAMP + r" \(demo\.sh:3:main\) Stage 3: teacher DNN: data/train -> exp/teacher", begin)
    m = re.fullmatch(STAMP + r" \(demo\.sh:5:main\) Stage 3: finished \[elapsed=(\d+)s\]", end)
    assert m and int(m.group(1)) >= 1, end


def test_stage_end_without_begin_is_an_error(tmp_path):
    proc = run_script(tmp_path, "stage_end\n")
    assert proc.returncode == 1
    assert "stage_end without stage_begin" in proc.stderr


STAGE = """overwrite={overwrite}
runs=0
work() {{
  if ! stage_is_done exp/sys; then
    runs=$((runs + 1))
    mkdir -p exp/sys && echo "$runs" > exp/sys/out
    stage_mark_done exp/sys
  fi
}}
work
work
echo "runs=$runs"
"""


def test_done_marker_skips_the_second_run(tmp_path):
    proc = run_script(tmp_path, STAGE.format(overwrite="false"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "runs=1\n"
    assert (tmp_path / "exp" / "sys" / ".done").read_text().startswith("finished ")
    assert "exp/sys is done (exp/sys/.done exists): skipping it; --overwrite true redoes it" in proc.stderr
    # A rerun of the whole script skips too.
    again = run_script(tmp_path, STAGE.format(overwrite="false"))
    assert again.stdout == "runs=0\n"
    assert not list((tmp_path / "exp" / "sys").glob(".done.tmp*"))


def test_overwrite_redoes_and_removes_the_marker_first(tmp_path):
    assert run_script(tmp_path, STAGE.format(overwrite="false")).stdout == "runs=1\n"
    # With overwrite=true every call redoes the work (a marker is never trusted).
    proc = run_script(tmp_path, STAGE.format(overwrite="true"))
    assert proc.stdout == "runs=2\n"
    assert "exp/sys was done; redoing it (overwrite=true)" in proc.stderr
    # A redo that fails leaves no marker behind.
    proc = run_script(tmp_path, "overwrite=true\nstage_is_done exp/sys || false\n")
    assert proc.returncode == 1
    assert not (tmp_path / "exp" / "sys" / ".done").exists()


def test_stage_is_done_without_marker(tmp_path):
    proc = run_script(tmp_path, "stage_is_done exp/none && echo done || echo todo\n")
    assert proc.stdout == "todo\n" and proc.stderr == ""


def test_helpers_check_their_arguments(tmp_path):
    for call in ("stage_is_done", "stage_mark_done", "stage_begin 1"):
        proc = run_script(tmp_path, call + "\n")
        assert proc.returncode == 1
        assert f"ERROR: usage: {call.split()[0]}" in proc.stderr


def test_check_stages_refuses_what_would_run_nothing(tmp_path):
    """kt.sh's --stage/--stop-stage check (issue 16: '--stage foo' used to print 'integer expression expected'
    eight times and then 'Successfully finished')."""
    assert run_script(tmp_path, "check_stages 0 100 7\ncheck_stages 7 7 7\n").returncode == 0
    for args, message in (("foo 100", "--stage and --stop-stage take a whole number, got 'foo'"),
                          ("3 -1", "--stage and --stop-stage take a whole number, got '-1'"),
                          ("9 100", "--stage 9: there is no such stage \\(the last is 7\\)"),
                          ("5 3", "--stage 5 comes after --stop-stage 3: nothing would run")):
        proc = run_script(tmp_path, f"check_stages {args} 7\necho not reached\n")
        assert proc.returncode == 1 and "not reached" not in proc.stdout
        assert re.fullmatch(STAMP + r" \(demo\.sh:3:main\) ERROR: " + message + "\n", proc.stderr), proc.stderr
