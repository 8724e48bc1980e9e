"""Logging with timestamp, file:line and rank, as in the house conventions."""
from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

FORMAT = "%(asctime)s (%(filename)s:%(lineno)d) [rank %(rank)s] %(levelname)s: %(message)s"


class _RankFilter(logging.Filter):
    def filter(self, record):
        record.rank = os.environ.get("RANK", "0")
        return True


def setup_logging(level: str | int = "INFO", log_file=None) -> logging.Logger:
    """Configure the root logger once (stderr, and ``log_file`` if given)."""
    root = logging.getLogger()
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper()))
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        h.addFilter(_RankFilter())
        root.addHandler(h)
    return root


# What `-dirty` ignores: a recipe's reference results (results/, RESULTS.md), which make_results --promote writes
# and which say nothing about the code that ran; otherwise the second of two promoted runs read as dirty.
RESULT_PATHSPECS = (":(top,exclude,glob)egs/*/results/**", ":(top,exclude,glob)egs/*/RESULTS.md")


def git_commit(cwd=None) -> str:
    """The current commit (with ``-dirty`` if a tracked file other than the recipes' reference results has
    changes), or ``unknown`` outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                *RESULT_PATHSPECS], cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_environment(logger: logging.Logger, extra: dict | None = None) -> None:
    """Log versions, commit, device and host at the start of a tool, for reproducibility."""
    import numpy
    import torch

    import asrkt

    logger.info("command: %s", " ".join(sys.argv))
    logger.info("asrkt %s (commit %s), python %s, torch %s, numpy %s, host %s", asrkt.__version__, git_commit(),
                platform.python_version(), torch.__version__, numpy.__version__, platform.node())
    for k, v in (extra or {}).items():
        logger.info("%s: %s", k, v)
