"""Merge per-job script shards into one C-sorted script (a key in two shards is an error).

  python -m asrkt.bin.merge_scp exp/dnn/post_train/post.scp exp/dnn/post_train/post.*.scp
"""
from __future__ import annotations

import argparse
import logging

from asrkt.io import merge_scp
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="merged script to write (atomically)")
    p.add_argument("inputs", nargs="+", help="script shards")
    args = p.parse_args(argv)
    setup_logging()
    n = merge_scp(args.inputs, args.output)
    logger.info("merged %d shards (%d entries) into %s", len(args.inputs), n, args.output)


if __name__ == "__main__":
    main()
