"""asrkt.utils.atomic and the entry-point wrapper: a full disk is one line naming the file, and nothing already
written is lost (issue 16: the model writer gave 'basic_ios::clear: iostream error' with no file name)."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest
import torch

from asrkt.models import ModelConfig, build_model, save_checkpoint
from asrkt.utils.atomic import atomic_path, atomic_write_text, remove_stale_temps, tmp_name
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError


def test_atomic_write_replaces_only_on_success(tmp_path):
    out = tmp_path / "a.txt"
    atomic_write_text(out, "old")
    with pytest.raises(ValueError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise ValueError("not a write failure: passes through unchanged")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (RuntimeError("basic_ios::clear: iostream error"), "the write failed \\(disk full\\?\\)"),
    (RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
                  "file write failed"), "the write failed \\(disk full\\?\\)"),
])
def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, error, reason):
    model = build_model(ModelConfig(type="dnn"), 4, 3)
    path = tmp_path / "exp" / "final.pt"
    save_checkpoint(path, model)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(AsrktError, match=f"{path}: could not be written: {reason}; the previous final.pt"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["final.pt"]


def test_entry_points_turn_a_full_disk_into_one_line(capsys):
    @main_wrapper
    def main(argv=None):
        raise OSError(errno.ENOSPC, "No space left on device", "exp/x/post.1.ark")

    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 1
    assert capsys.readouterr().err == ("ERROR: exp/x/post.1.ark: no space left on device while writing (free some "
                                       "space and rerun)\n")

    @main_wrapper
    def other(argv=None):
        raise OSError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):  # not a write failure: not this handler's business
        other([])


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    """A rerun after kill -9: the first temporary name asked for in a folder clears what dead processes left
    there (issue 16), and nothing of a process that still runs, nor anything not named like our temporaries."""
    dead = _dead_pid()
    live = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / f".feats.1.ark.tmp{dead}").write_bytes(b"half an ark")
        (tmp_path / f".train.tmp{dead}").mkdir()
        (tmp_path / f".train.tmp{dead}" / "wav.scp").write_text("a x.wav\n")
        (tmp_path / f".text.tmp{dead}.fix").write_text("a b\n")  # asrkt.data.validate's name
        (tmp_path / f".audio.old{dead}").mkdir()  # a folder swapped out (asrkt.corpora.common.swap_in_dir)
        target = tmp_path / "elsewhere"
        target.mkdir()
        (target / "keep").write_text("x")
        (tmp_path / f".final.pt.tmp{dead}").symlink_to(target)  # a link: removed, not what it points to
        kept = [f".feats.2.ark.tmp{live.pid}", f".feats.ark.tmp{os.getpid()}", f"notes.tmp{dead}", ".x.tmpabc",
                f".x.tmp{dead}x"]
        for name in kept:
            (tmp_path / name).write_text("keep")
        name = tmp_name(tmp_path / "out.txt")
        assert name == tmp_path / f".out.txt.tmp{os.getpid()}"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["elsewhere"])
        assert (target / "keep").read_text() == "x"
        assert remove_stale_temps(tmp_path / "missing") == []
    finally:
        live.kill()
        live.wait()
