"""egs/TEMPLATE/utils/parse_options.sh: Kaldi's option semantics, exercised through real bash scripts."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PARSE_OPTIONS = REPO_ROOT / "egs" / "TEMPLATE" / "utils" / "parse_options.sh"

# A script in the style of a recipe: options declared, parse_options.sh sourced, values printed one per line.
SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
nj=4                 # number of parallel jobs
cmd="run_local.py"   # job launcher
overwrite=false
empty=
line=orig
help_message="Usage: demo.sh [options] <data-dir>
  --nj N   number of jobs"
. {parse_options}
echo "nj=$nj"
echo "cmd=$cmd"
echo "overwrite=$overwrite"
echo "empty=$empty"
echo "line=$line"
echo "nargs=$#"
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "demo.sh"
    path.write_text(SCRIPT.format(parse_options=PARSE_OPTIONS))
    return path


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=script.parent,
                          timeout=30)


def values(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    out = {"args": []}
    for line in proc.stdout.splitlines():
        key, value = line.split("=", 1)
        if key == "arg":
            out["args"].append(value)
        else:
            out[key] = value
    return out


def test_declared_options_are_set_and_dashes_become_underscores(script):
    v = values(run(script, "--nj", "8", "--cmd", "run_slurm.py --mem 4G", "--empty", "x y"))
    assert v["nj"] == "8"
    assert v["cmd"] == "run_slurm.py --mem 4G"
    assert v["empty"] == "x y"
    assert v["overwrite"] == "false"


def test_last_value_wins(script):
    assert values(run(script, "--nj", "8", "--nj", "2"))["nj"] == "2"


def test_special_characters_are_kept_literally(script):
    v = values(run(script, "--cmd", "a'b\"c $HOME `x` \\n"))
    assert v["cmd"] == "a'b\"c $HOME `x` \\n"


def test_undeclared_option_is_an_error(script):
    proc = run(script, "--no-such-thing", "1")
    assert proc.returncode == 1
    assert "unknown option '--no-such-thing'" in proc.stderr
    assert "no variable 'no_such_thing'" in proc.stderr
    assert proc.stdout == ""


def test_internal_names_are_not_options(script):
    proc = run(script, "--__po_args", "1")
    assert proc.returncode == 1
    assert "invalid option '--__po_args'" in proc.stderr


def test_invalid_option_name(script):
    proc = run(script, "--a.b", "1")
    assert proc.returncode == 1
    assert "invalid option '--a.b'" in proc.stderr


def test_equals_form_is_an_error(script):
    proc = run(script, "--nj=8")
    assert proc.returncode == 1
    assert "'--nj=8'" in proc.stderr and "--nj 8" in proc.stderr
    assert proc.stdout == ""


def test_missing_value_is_an_error(script):
    proc = run(script, "--nj")
    assert proc.returncode == 1
    assert "option --nj needs a value" in proc.stderr


@pytest.mark.parametrize("value", ["true", "false"])
def test_boolean_accepts_true_and_false(script, value):
    assert values(run(script, "--overwrite", value))["overwrite"] == value


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_boolean_rejects_anything_else(script, value):
    proc = run(script, "--overwrite", value)
    assert proc.returncode == 1
    assert f"option --overwrite expects true or false, got '{value}'" in proc.stderr


def test_non_boolean_accepts_any_value(script):
    # `line` is not currently true/false, so it is not checked as a boolean.
    assert values(run(script, "--line", "yes"))["line"] == "yes"


def test_config_is_sourced(script, tmp_path):
    conf = tmp_path / "demo.conf"
    conf.write_text("# a comment\nnj=16\nline='a b'\noverwrite=true\n")
    v = values(run(script, "--config", str(conf)))
    assert (v["nj"], v["line"], v["overwrite"]) == ("16", "a b", "true")


@pytest.mark.parametrize("order", ["config_first", "config_last"])
def test_command_line_wins_over_config_whatever_the_order(script, tmp_path, order):
    conf = tmp_path / "demo.conf"
    conf.write_text("nj=16\nline=from_config\n")
    args = ["--config", str(conf), "--nj", "3"] if order == "config_first" else ["--nj", "3", "--config", str(conf)]
    v = values(run(script, *args, "data/train"))
    assert v["nj"] == "3"
    assert v["line"] == "from_config"
    assert v["args"] == ["data/train"]


def test_later_config_wins_over_earlier(script, tmp_path):
    (tmp_path / "a.conf").write_text("nj=1\nline=a\n")
    (tmp_path / "b.conf").write_text("nj=2\n")
    v = values(run(script, "--config", "a.conf", "--config", "b.conf"))
    assert (v["nj"], v["line"]) == ("2", "a")


def test_missing_config_is_an_error(script):
    proc = run(script, "--config", "nowhere.conf")
    assert proc.returncode == 1
    assert "config file 'nowhere.conf' (from --config) does not exist" in proc.stderr


def test_config_setting_an_undeclared_variable_is_an_error(script, tmp_path):
    (tmp_path / "bad.conf").write_text("nj=2\n\nnum_jobs=3\n")
    proc = run(script, "--config", "bad.conf")
    assert proc.returncode == 1
    assert "config file 'bad.conf' line 3 sets 'num_jobs', which is not an option" in proc.stderr


def test_config_boolean_is_checked(script, tmp_path):
    (tmp_path / "bad.conf").write_text("overwrite=yes\n")
    proc = run(script, "--config", "bad.conf")
    assert proc.returncode == 1
    assert "config file 'bad.conf': 'overwrite' expects true or false, got 'yes'" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_help_message_and_exits_0(script, flag):
    proc = run(script, "--nj", "2", "--line", "a b", flag, "--undeclared", "x")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: demo.sh [options] <data-dir>\n  --nj N   number of jobs\n\n")


def test_help_lists_every_option_with_its_current_value_and_comment(script):
    """./run.sh --help listed no options: now each declared option, its value (after the options given before
    --help, e.g. a corpus's run.sh settings) and its comment."""
    proc = run(script, "--nj", "2", "--line", "a b", "--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    options = lines[lines.index("Options (--name value; shown with their current values):") + 1:]
    assert [ln.split()[0] for ln in options] == ["--nj", "--cmd", "--overwrite", "--empty", "--line", "--config"]
    assert options[0].split() == ["--nj", "2", "#", "number", "of", "parallel", "jobs"]
    assert options[1].split() == ["--cmd", "run_local.py", "#", "job", "launcher"]
    assert options[2].split() == ["--overwrite", "false"]
    assert options[3].split() == ["--empty", '""'] and options[4].split() == ["--line", '"a', 'b"']
    assert "help_message" not in proc.stdout and "--help-message" not in proc.stdout


def test_help_uses_kaldi_configuration_markers(tmp_path):
    path = tmp_path / "marked.sh"
    path.write_text("stage=0\n# Begin configuration section.\nnj=4  # jobs\n# End configuration section.\n"
                    f"other=1\nhelp_message=usage\n. {PARSE_OPTIONS}\n")
    proc = run(path, "--help")
    assert proc.returncode == 0
    assert [ln.split()[0] for ln in proc.stdout.splitlines()[2:]] == ["Options", "--nj", "--config"]


def test_help_without_help_message(tmp_path):
    path = tmp_path / "bare.sh"
    path.write_text(f"nj=1\n. {PARSE_OPTIONS}\necho reached\n")
    proc = run(path, "--help")
    assert proc.returncode == 0
    assert "no help message" in proc.stderr and "--nj" in proc.stdout
    assert "reached" not in proc.stdout


def test_positional_arguments_are_kept(script):
    v = values(run(script, "--nj", "2", "data/train", "--overwrite", "maybe", "a b"))
    assert v["nj"] == "2"
    # Parsing stopped at data/train: what follows is positional, however it looks.
    assert v["overwrite"] == "false"
    assert v["args"] == ["data/train", "--overwrite", "maybe", "a b"]


def test_double_dash_ends_the_options(script):
    v = values(run(script, "--nj", "2", "--", "--nj", "5"))
    assert v["nj"] == "2"
    assert v["args"] == ["--nj", "5"]


def test_no_arguments(script):
    v = values(run(script))
    assert (v["nj"], v["nargs"]) == ("4", "0")


def test_option_value_may_look_like_an_option(script):
    v = values(run(script, "--cmd", "--x", "pos"))
    assert v["cmd"] == "--x"
    assert v["args"] == ["pos"]


def test_leaves_no_helper_names_behind(tmp_path):
    path = tmp_path / "names.sh"
    path.write_text(f"set -u\nnj=1\n. {PARSE_OPTIONS}\ndeclare -p | grep -c __po_ || true\n"
                    "declare -F | grep -c __po_ || true\n")
    proc = run(path, "--nj", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0"]
