"""The table of a DILS run's depths with the dev WER of each depth's best model (issue 15: dev loss and WER per
depth, and the time spent).

Usage: python -m asrkt.bin.dils_depths <exp-dir> --decode-dirs '<exp-dir>/dils/decode_<set>_depth_{depth}'

<exp-dir>/dils/depths.tsv is written by the ``dils`` hook while it trains (a row per depth: epochs, best dev loss,
time); the depth models <exp-dir>/dils/depth_<N>.pt are decoded by kt.sh stage 7 into the folders that
--decode-dirs names, ``{depth}`` standing for N. Writes <exp-dir>/dils/depths.md (Markdown, the WER added) and
prints it. A depth whose decode folder has no score.yaml gets an empty WER cell.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def depth_rows(exp_dir: Path) -> list[dict]:
    table = exp_dir / "dils" / "depths.tsv"
    if not table.is_file():
        raise AsrktError(f"{table}: not found (written by the dils hook while {exp_dir} trains)")
    lines = table.read_text().splitlines()
    if not lines:
        raise AsrktError(f"{table}: empty")
    header = lines[0].split("\t")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise AsrktError(f"{table}, line {n}: {len(cells)} cells for {len(header)} columns")
        rows.append(dict(zip(header, cells)))
    return rows


def with_wer(rows: list[dict], decode_dirs: str) -> list[dict]:
    out = []
    for row in rows:
        score = Path(decode_dirs.format(depth=row["hidden_layers"])) / "score.yaml"
        wer = yaml.safe_load(score.read_text()).get("wer") if score.is_file() else None
        out.append({**row, "dev_wer": "" if wer is None else f"{float(wer):.2f}"})
    return out


def markdown(exp_dir: Path, rows: list[dict]) -> str:
    columns = [c for c in rows[0] if c != "hidden_layers"] if rows else []
    lines = [f"# DILS depths of {exp_dir}", "",
             "The best model of each depth (its best accepted epoch); times are train and dev passes, summed.", "",
             "| hidden layers | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    lines += ["| " + " | ".join([r["hidden_layers"]] + [r[c] for c in columns]) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m asrkt.bin.dils_depths", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--decode-dirs", required=True,
                   help="decode folder of each depth's model, with {depth} for its number of hidden layers")
    args = p.parse_args(argv)
    setup_logging()
    if "{depth}" not in args.decode_dirs:
        raise AsrktError(f"--decode-dirs must hold {{depth}}, got '{args.decode_dirs}'")
    rows = with_wer(depth_rows(args.exp_dir), args.decode_dirs)
    text = markdown(args.exp_dir, rows)
    atomic_write_text(args.exp_dir / "dils" / "depths.md", text)
    print(text, end="")
    return rows


if __name__ == "__main__":
    main()
