"""Write a subset of a Kaldi data dir (Kaldi's subset_data_dir.sh); every table is filtered, the result validated.

    python -m asrkt.bin.subset_data_dir --first 100 data/train data/train_100
    python -m asrkt.bin.subset_data_dir --fraction 0.25 --seed 1 data/train data/train_25pct_spk
    python -m asrkt.bin.subset_data_dir --speakers spk.list data/train data/train_spk
    python -m asrkt.bin.subset_data_dir --utt-list utt.list data/train data/train_utt

--fraction takes whole speakers (shuffled with --seed) until that fraction of the utterances is reached;
with one seed, smaller fractions are subsets of larger ones.
"""
from __future__ import annotations

import argparse

from asrkt.data.subset import subset_data_dir
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sel = p.add_mutually_exclusive_group(required=True)
    sel.add_argument("--first", type=int, metavar="N", help="the first N utterances (sorted order)")
    sel.add_argument("--last", type=int, metavar="N", help="the last N utterances (sorted order)")
    sel.add_argument("--fraction", type=float, metavar="F", help="whole speakers covering fraction F of utterances")
    sel.add_argument("--speakers", metavar="FILE", help="speaker ids, one per line")
    sel.add_argument("--utt-list", metavar="FILE", help="utterance ids, one per line (first field)")
    p.add_argument("--seed", type=int, default=0, help="speaker shuffling seed for --fraction (default 0)")
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args(argv)
    setup_logging()
    summary = subset_data_dir(args.src, args.dst, first=args.first, last=args.last, fraction=args.fraction,
                              speakers=args.speakers, utts=args.utt_list, seed=args.seed)
    print(f"Wrote subset {summary}")


if __name__ == "__main__":
    main()
