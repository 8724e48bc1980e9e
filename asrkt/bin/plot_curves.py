"""Training curves of several systems from their summary.tsv: train/dev loss and dev token error rate per epoch.

    python -m asrkt.bin.plot_curves exp/teacher exp/student_kt_ft exp/student_scratch --out exp/curves.png

One colour per system; train loss solid, dev loss dashed; epochs the learning-rate schedule rejected are
crossed. Losses of different objectives (CTC, soft-target KL) are not on the same scale: compare a system's
curves with each other, and systems by their dev TER. ``--term kd`` draws one loss term instead of the weighted
total (summary.tsv's train_kd, valid_kd), e.g. to compare KT students whose losses add other terms (PKT) with the
plain one:

    python -m asrkt.bin.plot_curves exp/student_kt exp/student_tli --term kd --log-loss --out exp/curves_kt.png
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from asrkt.score.results import read_summary
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import setup_logging
from asrkt.utils.plotting import colormap, new_figure, save_png

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dirs", nargs="+", help="exp folders with summary.tsv")
    p.add_argument("--labels", nargs="*", default=None, help="legend names (default: folder names)")
    p.add_argument("--term", default=None,
                   help="plot this loss term (its train_/valid_ columns) instead of the total loss, e.g. kd")
    p.add_argument("--log-loss", action="store_true",
                   help="log scale for the loss axis (the converged tail, where the systems differ, is visible)")
    p.add_argument("--out", required=True, help="PNG to write")
    return p


def column(rows: list[dict], name: str) -> list[float]:
    """A numeric column (NaN where missing or not a number, e.g. 'nan' or '-')."""
    out = []
    for r in rows:
        try:
            out.append(float(r.get(name)))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


# The dev error rate of each objective (its summary column valid_<metric>): axis label and panel title.
METRICS = {"ter": ("dev token error rate (%)", "dev TER (greedy CTC)"),
           "fer": ("dev frame error rate (%)", "dev FER (frame classification, hybrid)")}


def plot_curves(exp_dirs, out, labels=None, term: str | None = None, log_loss: bool = False) -> None:
    labels = labels or [Path(d).name for d in exp_dirs]
    if len(labels) != len(exp_dirs):
        raise AsrktError(f"{len(labels)} --labels for {len(exp_dirs)} exp folders")
    train_col, valid_col = (f"train_{term}", f"valid_{term}") if term else ("train_loss", "valid_loss")
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_ter = fig.subplots(1, 2)
    colors = colormap("tab10")
    metrics = set()
    for i, (d, label) in enumerate(zip(exp_dirs, labels)):
        rows = read_summary(d)
        if not rows:
            logger.warning("%s/summary.tsv has no epochs yet; skipped", d)
            continue
        if valid_col not in rows[0]:
            raise AsrktError(f"{Path(d) / 'summary.tsv'}: no column {valid_col} (loss term '{term}' not trained "
                             f"there; its terms: {', '.join(k[6:] for k in rows[0] if k.startswith('train_') and k != 'train_loss')})")
        epochs = column(rows, "epoch")
        c = colors(i % 10)
        ax_loss.plot(epochs, column(rows, train_col), "o-", color=c, label=f"{label} train", markersize=3)
        ax_loss.plot(epochs, column(rows, valid_col), "s--", color=c, label=f"{label} dev", markersize=3)
        metric = next((m for m in METRICS if f"valid_{m}" in rows[0]), None)  # (none: soft targets only, CTC)
        if metric:
            metrics.add(metric)
            ax_ter.plot(epochs, column(rows, f"valid_{metric}"), "o-", color=c, label=label, markersize=3)
        rejected = [(e, v) for e, v, r in zip(epochs, column(rows, valid_col), rows)
                    if r.get("decision") == "rejected"]
        if rejected:
            ax_loss.plot(*zip(*rejected), "x", color=c, markersize=8)
    ax_loss.set_xlabel("epoch")
    if log_loss:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"loss term {term} per frame" if term else "loss per frame")
    ax_loss.set_title(f"train (solid) and dev (dashed) {f'{term} term' if term else 'loss'}; x = rejected epoch",
                      fontsize=9)
    ax_ter.set_xlabel("epoch")
    ylabel, title = METRICS[metrics.pop()] if len(metrics) == 1 else ("dev error rate (%)", "dev error rate")
    ax_ter.set_ylabel(ylabel)
    ax_ter.set_title(title, fontsize=9)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_ter):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_png(fig, out, dpi=100)


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    plot_curves(args.exp_dirs, args.out, args.labels, args.term, args.log_loss)
    logger.info("wrote %s (%d systems)", args.out, len(args.exp_dirs))
    return Path(args.out)


if __name__ == "__main__":
    main()
