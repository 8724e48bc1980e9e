"""Progress of a decoding or dumping loop: tqdm on a terminal, else log lines with frames/s, utts/s and ETA."""
from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)


class Progress:
    """Log lines with rate and ETA while a loop runs (tqdm only when stderr is a terminal)."""

    def __init__(self, total_utts: int, what: str = "decoded", every_s: float = 10.0):
        self.total = total_utts
        self.what = what
        self.every_s = every_s
        self.start = self.last = time.perf_counter()
        self.utts = 0
        self.frames = 0
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_utts, unit="utt", desc=what, leave=False)

    def update(self, utts: int, frames: int) -> None:
        self.utts += utts
        self.frames += frames
        if self._bar is not None:
            self._bar.update(utts)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.utts / elapsed
        eta = (self.total - self.utts) / rate if rate > 0 else float("nan")
        return (f"{self.what} {self.utts}/{self.total} utts, {self.frames} frames, {self.frames / elapsed:.0f} "
                f"frames/s, {rate:.1f} utts/s, elapsed {elapsed:.1f}s, ETA {eta:.0f}s")

    def close(self) -> float:
        if self._bar is not None:
            self._bar.close()
        logger.info("%s", self.line())
        return time.perf_counter() - self.start
