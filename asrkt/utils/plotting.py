"""Figures for people to look at (training curves, posteriorgrams, result charts), written as PNG.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot: no global state and no display backend,
so plotting works the same in batch jobs, tests and threads. PNGs are written atomically.
"""
from __future__ import annotations

from pathlib import Path

from asrkt.utils.atomic import atomic_path


def new_figure(**kwargs):
    """A pyplot-free matplotlib Figure (``figsize=...``); make axes with ``fig.subplots(...)``."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def colormap(name: str = "tab10"):
    from matplotlib import colormaps

    return colormaps[name]


def save_png(fig, path, dpi: int = 100) -> Path:
    """Lay out ``fig`` and write it to ``path`` (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
