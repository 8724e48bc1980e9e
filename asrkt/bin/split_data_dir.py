"""Split a Kaldi data dir into <dir>/split<nj>/{1..nj} by speaker (Kaldi's split_data.sh); prints the job dirs.
An existing split newer than the data dir is reused.

    python -m asrkt.bin.split_data_dir data/train 4
"""
from __future__ import annotations

import argparse

from asrkt.data.subset import split_data_dir
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    p.add_argument("nj", type=int, help="number of jobs")
    args = p.parse_args(argv)
    setup_logging()
    for d in split_data_dir(args.data_dir, args.nj):
        print(d)


if __name__ == "__main__":
    main()
