"""asrkt.utils.atomic and the entry-point wrapper: a full disk is one line naming the file, and nothing already
written is lost (issue 16: the model writer gave 'basic_ios::clear: iostream error' with no file name)."""
from __future__ import annotations

import errno

import pytest
import torch

from asrkt.models import ModelConfig, build_model, save_checkpoint
from asrkt.utils.atomic import atomic_path, atomic_write_text
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
