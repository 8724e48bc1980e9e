"""Results tables from result records: this run's (under exp/) next to the recipe's reference ones.

    python -m asrkt.bin.make_results --recipe-dir egs/digits --dev-set dev --test-sets "dev test"
    python -m asrkt.bin.make_results --recipe-dir egs/digits --dev-set dev --test-sets "dev test" --promote all
    python -m asrkt.bin.make_results --recipe-dir egs/digits --dev-set dev --test-sets "dev test" --regenerate

Without --promote: reads this run's records (``exp/results/*.yaml``, written by record_result), writes
``exp/RESULTS.md`` and ``exp/results.png``, and prints this run next to the recipe's reference results
(``results/*.yaml``, committed); nothing outside exp/ is written, so a run leaves the git tree clean.
With --promote SYSTEM... (or ``all``): copies those records of exp/results into ``results/`` and regenerates the
committed ``RESULTS.md`` and ``results/results.png``: making a run a reference result is an explicit act.
With --regenerate: only the regeneration, from the committed records as they are (after a change to the tables).

Rows are grouped by each record's ``group`` field (teacher / LSTM from scratch / KT + fine-tuning /
KT-regularised); records of one system that differ only by seed (``name`` and ``name_seedN``) are one row
with mean ± std. The dev and evaluation columns are the recipe's sets (--dev-set, --test-sets; without them,
the set names are guessed from dev/valid/val/dev_clean and test/eval/test_clean). Systems trained at several
data sizes (kt.sh --train-fraction: families named ``<system>_<P>pct``) get ``results_by_size.png`` too, WER
against training hours; published results in ``<recipe>/local/anchors.yaml`` are shown in a table of their own.
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from asrkt.score.results import (eval_sets, guess_set_names, load_records, plot_by_data_size, plot_results,
                                 render_comparison, render_markdown)
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.cli import main_wrapper
from asrkt.utils.config import load_yaml
from asrkt.utils.errors import fail
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe-dir", required=True, help="egs/<corpus>")
    p.add_argument("--dev-set", default=None, help="the recipe's dev set (kt.sh: --valid-set)")
    p.add_argument("--test-sets", default=None,
                   help="the recipe's decoded sets, space-separated (kt.sh: --test-sets); the dev set among them "
                        "is shown once, in the dev column")
    p.add_argument("--results-dir", default=None, help="this run's records (default: <recipe-dir>/exp/results)")
    p.add_argument("--out", default=None, help="Markdown output (default: <recipe-dir>/exp/RESULTS.md)")
    p.add_argument("--png", default=None, help="bar chart (default: <recipe-dir>/exp/results.png)")
    p.add_argument("--reference-dir", default=None,
                   help="the recipe's committed reference records (default: <recipe-dir>/results)")
    p.add_argument("--promote", nargs="+", default=None, metavar="SYSTEM",
                   help="copy these records (or 'all') of --results-dir into --reference-dir and regenerate "
                        "<recipe-dir>/RESULTS.md and <reference-dir>/results.png")
    p.add_argument("--regenerate", action="store_true",
                   help="regenerate <recipe-dir>/RESULTS.md and <reference-dir>/results.png from the records in "
                        "--reference-dir, promoting nothing")
    return p


ANCHORS = "local/anchors.yaml"  # published results on the corpus, shown beside ours


def load_anchors(recipe_dir: Path) -> list[dict]:
    path = recipe_dir / ANCHORS
    if not path.is_file():
        return []
    anchors = load_yaml(path).get("anchors")
    if not isinstance(anchors, list) or not all(isinstance(a, dict) and {"system", "test_wer", "source"} <= set(a)
                                                for a in anchors):
        raise fail("expected 'anchors:' with a list of {system, test_wer, source[, dev_wer, note]}", path)
    return anchors


def write_tables(records, out: Path, png: Path, dev, tests, source: str, anchors=()) -> None:
    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(out.resolve().parent).as_posix()
        except ValueError:
            return str(p.resolve())

    plot_results(records, png, dev, tests)
    size_png = png.with_name(png.stem + "_by_size.png")
    if dev is None and tests is None:
        dev, tests = guess_set_names(records)
    evals = eval_sets(dev, tests) or [dev]
    has_sizes = plot_by_data_size(records, size_png, evals[0]) if evals[0] else False
    atomic_write_text(out, render_markdown(records, png_name=rel(png), dev=dev, test_sets=tests, source=source,
                                           anchors=list(anchors), size_png_name=rel(size_png) if has_sizes else None))
    logger.info("wrote %s and %s from %d records", out, png, len(records))


def promote(results_dir: Path, reference_dir: Path, systems: list[str]) -> list[Path]:
    """Copy the records of ``systems`` (or every one for ``all``) from ``results_dir`` into ``reference_dir``."""
    names = sorted(p.stem for p in results_dir.glob("*.yaml")) if systems == ["all"] else systems
    missing = [s for s in names if not (results_dir / f"{s}.yaml").is_file()]
    if missing or not names:
        raise fail(f"no record to promote for {', '.join(missing) or 'any system'} (run asrkt.bin.record_result "
                   "first)", results_dir)
    reference_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for s in names:
        shutil.copyfile(results_dir / f"{s}.yaml", reference_dir / f"{s}.yaml")
        out.append(reference_dir / f"{s}.yaml")
        logger.info("promoted %s to %s", results_dir / f"{s}.yaml", reference_dir)
    return out


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    recipe_dir = Path(args.recipe_dir)
    results_dir = Path(args.results_dir) if args.results_dir else recipe_dir / "exp" / "results"
    reference_dir = Path(args.reference_dir) if args.reference_dir else recipe_dir / "results"
    tests = args.test_sets.split() if args.test_sets is not None else None
    dev = args.dev_set
    if args.promote or args.regenerate:
        if args.promote:
            promote(results_dir, reference_dir, args.promote)
        out = recipe_dir / "RESULTS.md"
        write_tables(load_records(reference_dir), out, reference_dir / "results.png", dev, tests,
                     source="results/*.yaml", anchors=load_anchors(recipe_dir))
        return out
    out = Path(args.out) if args.out else recipe_dir / "exp" / "RESULTS.md"
    png = Path(args.png) if args.png else recipe_dir / "exp" / "results.png"
    records = load_records(results_dir)
    write_tables(records, out, png, dev, tests, source=str(results_dir), anchors=load_anchors(recipe_dir))
    reference = load_records(reference_dir) if list(reference_dir.glob("*.yaml")) else []
    if reference:
        comparison = render_comparison(records, reference, dev, tests, reference_name=str(recipe_dir / "RESULTS.md"))
        atomic_write_text(out, out.read_text(encoding="utf-8") + "\n## Next to the reference results\n\n"
                          + comparison)
    else:
        comparison = f"(no reference results in {reference_dir} to compare with)\n"
    print(f"Results of this run: {out}\n")
    print(comparison, end="")
    return out


if __name__ == "__main__":
    main()
