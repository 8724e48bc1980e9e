"""Regenerate ``<recipe>/RESULTS.md`` and ``<recipe>/results/results.png`` from ``<recipe>/results/*.yaml``.

    python -m asrkt.bin.make_results --recipe-dir egs/digits

Only the committed records are read (never exp/), so the table can be rebuilt anywhere. Rows are grouped
teacher / LSTM from scratch / LSTM KT + fine-tuning / LSTM KT-regularised; records of one system that differ
only by seed (``name`` and ``name_seedN``) are one row with mean ± std.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asrkt.score.results import load_records, plot_results, render_markdown
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe-dir", required=True, help="egs/<corpus>")
    p.add_argument("--results-dir", default=None, help="records folder (default: <recipe-dir>/results)")
    p.add_argument("--out", default=None, help="Markdown output (default: <recipe-dir>/RESULTS.md)")
    p.add_argument("--png", default=None, help="bar chart (default: <results-dir>/results.png)")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    recipe_dir = Path(args.recipe_dir)
    results_dir = Path(args.results_dir) if args.results_dir else recipe_dir / "results"
    out = Path(args.out) if args.out else recipe_dir / "RESULTS.md"
    png = Path(args.png) if args.png else results_dir / "results.png"
    records = load_records(results_dir)
    try:
        png_rel = png.resolve().relative_to(out.resolve().parent).as_posix()
    except ValueError:
        png_rel = str(png.resolve())
    plot_results(records, png)
    atomic_write_text(out, render_markdown(records, png_name=png_rel))
    logger.info("wrote %s and %s from %d records", out, png, len(records))
    return out


if __name__ == "__main__":
    main()
