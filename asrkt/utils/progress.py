"""Progress of a long loop: a tqdm bar when stderr is a terminal, else a log line every few seconds with
the rate (units/s and frames/s), the elapsed time and the ETA, so that logs of batch jobs show it too."""
from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)


class Progress:
    """``Progress(total, "utts", desc="decoded")``; ``update(n, frames)`` per step; ``close()`` at the end."""

    def __init__(self, total: int, unit: str = "utts", desc: str = "", every_s: float = 10.0,
                 log: logging.Logger | None = None, bar: bool = True):
        self.total, self.unit, self.desc, self.every_s = total, unit, desc, every_s
        self.log = log or logger
        self.done = 0
        self.frames = 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if bar and sys.stderr.isatty():  # bar=False: lines only (e.g. a training rank other than 0)
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc or None, unit=unit.rstrip("s") or "it", leave=False)

    def update(self, n: int = 1, frames: int = 0) -> None:
        self.done += n
        self.frames += frames
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        frames = f", {self.frames / elapsed:.0f} frames/s" if self.frames else ""
        prefix = f"{self.desc}: " if self.desc else ""
        return (f"{prefix}{self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s{frames}), "
                f"elapsed {elapsed:.1f}s, ETA {eta:.0f}s")

    def close(self) -> float:
        """Close the bar, log the final line, return the elapsed seconds."""
        if self.bar is not None:
            self.bar.close()
        self.log.info("%s", self.line())
        return time.monotonic() - self.start
