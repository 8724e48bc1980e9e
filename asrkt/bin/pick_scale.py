"""Pick the acoustic scale (inverse LM weight) with the lowest WER on a dev set decoded at several scales.

Usage: python -m asrkt.bin.pick_scale <tune-dir>

<tune-dir> holds acwt_<s>/score.yaml (written by ``asrkt.bin.decode --acoustic-scales "..."`` or
``asrkt.bin.decode_gmm --acoustic-scale "..." --out-prefix tune_``). Writes <tune-dir>/best.yaml and prints the
chosen scale on stdout (for the recipe: the test sets are then decoded once, at that scale).
"""
from __future__ import annotations

import argparse

from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.pick_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tune_dir")
    args = parser.parse_args(argv)
    setup_logging()
    from asrkt.score.decode_dir import pick_best_scale

    best = pick_best_scale(args.tune_dir)
    print(f"{best['acoustic_scale']:g}")
    return best


if __name__ == "__main__":
    main()
