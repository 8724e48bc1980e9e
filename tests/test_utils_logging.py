"""asrkt.utils.logging.git_commit: the commit a result record names, and when it is -dirty."""
import subprocess

import pytest

from asrkt.utils.logging import git_commit


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "asrkt").mkdir()
    (tmp_path / "asrkt" / "code.py").write_text("x = 1\n")
    recipe = tmp_path / "egs" / "an4"
    (recipe / "results").mkdir(parents=True)
    (recipe / "results" / "teacher.yaml").write_text("wer: 30\n")
    (recipe / "RESULTS.md").write_text("| teacher | 30 |\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_clean_tree_has_no_dirty_mark(repo):
    commit = git_commit(repo / "egs" / "an4")
    assert len(commit) == 12 and not commit.endswith("-dirty")


def test_promoted_results_do_not_make_the_next_record_dirty(repo):
    # make_results --promote rewrites these; a second run promoted after the first must not read as dirty.
    recipe = repo / "egs" / "an4"
    (recipe / "results" / "teacher.yaml").write_text("wer: 29\n")
    (recipe / "RESULTS.md").write_text("| teacher | 29 |\n")
    assert not git_commit(recipe).endswith("-dirty")


def test_a_changed_source_file_anywhere_in_the_tree_is_dirty(repo):
    # Seen from the recipe folder, a change outside it (the package) still counts.
    (repo / "asrkt" / "code.py").write_text("x = 2\n")
    assert git_commit(repo / "egs" / "an4").endswith("-dirty")


def test_outside_git_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
