"""What a training run reports: per-term loss statistics, the progress line, summary.tsv and the curves PNG.

Only the active loss terms appear (by name), and the objective's dev metric when there is one.
"""
from __future__ import annotations

import logging
import math

from asrkt.utils.atomic import atomic_open
from asrkt.utils.plotting import new_figure, save_png
from asrkt.utils.progress import Progress

logger = logging.getLogger(__name__)


def fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


class LossStats:
    """Sums and counts per loss term over an epoch (or a dev pass), and the metric's errors and units.

    A term's value is ``sum / count`` over everything added; the total is ``sum_i weight_i * value_i``."""

    def __init__(self, weights: dict[str, float]):
        self.weights = dict(weights)
        self.sums = {name: 0.0 for name in weights}
        self.counts = {name: 0 for name in weights}
        self.errors = 0
        self.units = 0

    def add(self, name: str, loss_sum: float, count: int) -> None:
        self.sums[name] += loss_sum
        self.counts[name] += count

    def value(self, name: str) -> float:
        return self.sums[name] / self.counts[name] if self.counts[name] else float("nan")

    def total(self) -> float:
        return sum(w * self.value(n) for n, w in self.weights.items()) if self.weights else float("nan")

    @property
    def metric(self) -> float:
        return 100.0 * self.errors / self.units if self.units else float("nan")

    def terms_text(self) -> str:
        return ", ".join(f"{n} {fmt(self.value(n))}" for n in self.weights)


def summary_columns(term_names: list[str], metric: str | None) -> list[str]:
    return (["epoch", "lr", "train_loss"] + [f"train_{t}" for t in term_names] + ["valid_loss"]
            + [f"valid_{t}" for t in term_names] + ([f"valid_{metric}"] if metric else [])
            + ["frames_per_s", "epoch_time_s", "decision", "bad_batches"])


# summary.tsv number formats: the lr keeps its significant digits through many halvings
_CELL_FORMATS = {"lr": "{:.6g}", "frames_per_s": "{:.1f}", "epoch_time_s": "{:.2f}"}


def format_cell(column: str, value) -> str:
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "nan"
    return _CELL_FORMATS.get(column, "{:.4f}").format(value)


def write_summary(path, columns: list[str], rows: list[dict]) -> None:
    with atomic_open(path) as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(format_cell(c, row.get(c, float("nan"))) for c in columns) + "\n")


def stats_row(prefix: str, stats: LossStats) -> dict:
    """``{prefix}_loss`` and ``{prefix}_<term>`` of ``stats``."""
    row = {f"{prefix}_loss": stats.total()}
    row.update({f"{prefix}_{n}": stats.value(n) for n in stats.weights})
    return row


class EpochProgress(Progress):
    """Progress of one epoch (tqdm on a terminal, else a log line every ``every_s`` seconds) with the running
    loss, each term apart, and the lr appended."""

    def __init__(self, epoch: int, total_batches: int, every_s: float, bar: bool = True):
        super().__init__(total_batches, unit="batches", desc=f"epoch {epoch}", every_s=every_s, log=logger, bar=bar)
        self.status = ""

    def step(self, frames: int, stats: LossStats, lr: float) -> None:
        self.status = f"loss {fmt(stats.total())} ({stats.terms_text()}), lr {lr:.3g}"
        if self.bar is not None:
            self.bar.set_postfix_str(self.status, refresh=False)
        self.update(1, frames)

    def line(self) -> str:
        return f"{super().line()}; {self.status}" if self.status else super().line()


def plot_curves(path, title: str, rows: list[dict], term_names: list[str], metric: str | None,
                metric_label: str = "") -> None:
    """Loss of record (train, dev, rejected epochs) and each term's dev value; the dev metric on the right."""
    epochs = [r["epoch"] for r in rows]
    fig = new_figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["valid_loss"] for r in rows], "s-", label="dev")
    rejected = [r for r in rows if r["decision"] == "rejected"]
    if rejected:
        ax1.plot([r["epoch"] for r in rejected], [r["valid_loss"] for r in rejected], "rx", markersize=10,
                 label="rejected")
    if len(term_names) > 1:
        for t in term_names:
            ax1.plot(epochs, [r[f"valid_{t}"] for r in rows], "--", alpha=0.7, label=f"dev {t}")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (" + " + ".join(term_names) + ")")
    ax1.legend()
    ax1.grid(alpha=0.3)
    if metric:
        ax2.plot(epochs, [r[f"valid_{metric}"] for r in rows], "s-", color="C2")
        ax2.set_ylabel(metric_label or f"dev {metric} (%)")
    else:
        for t in term_names:
            ax2.plot(epochs, [r[f"train_{t}"] for r in rows], "o-", label=f"train {t}")
        ax2.set_ylabel("train loss per term")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    save_png(fig, path, dpi=90)
