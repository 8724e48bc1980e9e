"""Print ``key rows cols`` for each matrix of a table (Kaldi's feat-to-len and feat-to-dim in one).

Vectors print as one row: ``key 1 dim``.

  python -m asrkt.bin.matrix_info scp:data/train/feats.scp > utt2shape
  python -m asrkt.bin.matrix_info --summary scp:exp/dnn/post_train/post.scp
"""
from __future__ import annotations

import argparse
import logging
import sys

from asrkt.io import read_matrices
from asrkt.io.kaldi import quiet_broken_pipe
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rspecifier", help="e.g. scp:feats.scp, ark:post.1.ark")
    p.add_argument("--summary", action="store_true",
                   help="print only totals: objects, rows, column counts (and dtypes) seen")
    args = p.parse_args(argv)
    setup_logging()
    with quiet_broken_pipe():
        n = rows_total = 0
        cols_seen, dtypes = set(), set()
        out = sys.stdout
        for key, array in read_matrices(args.rspecifier):
            rows, cols = (array.shape if array.ndim == 2 else (1, array.shape[0]))
            n += 1
            rows_total += rows
            cols_seen.add(cols)
            dtypes.add(str(array.dtype))
            if not args.summary:
                out.write(f"{key} {rows} {cols}\n")
        if args.summary:
            out.write(f"objects {n}\nrows {rows_total}\ncols {' '.join(map(str, sorted(cols_seen)))}\n"
                      f"dtypes {' '.join(sorted(dtypes))}\n")
        logger.info("%d objects, %d rows, column counts %s", n, rows_total, sorted(cols_seen))


if __name__ == "__main__":
    main()
