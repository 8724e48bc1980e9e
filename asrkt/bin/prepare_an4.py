"""Stage 0 of egs/an4: Kaldi data dirs train_nodev (848), train_dev (100) and test (130) from the AN4 corpus.

    python -m asrkt.bin.prepare_an4 --corpus-dir downloads/an4 --data-dir data

The corpus folder is the unpacked WAV version of AN4 (``etc/``, ``wav/an4_clstk``, ``wav/an4test_clstk``).
Utterance ids follow ESPnet (``fash-an251-b``); wav.scp holds absolute paths into the corpus folder.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.corpora.an4 import SETS, check_corpus_dir, prepare_an4
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger("asrkt.bin.prepare_an4")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", default="downloads/an4", help="the unpacked AN4 corpus (default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="parent of the data dirs train_nodev, train_dev, test")
    p.add_argument("--log-level", default="INFO")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    check_corpus_dir(args.corpus_dir)  # fail fast, before the slow environment logging
    log_environment(logger, {"corpus dir": args.corpus_dir, "data dir": args.data_dir})
    summary = prepare_an4(args.corpus_dir, args.data_dir)
    for name in SETS:
        s = summary[name]
        logger.info("%s: %d utterances, %d speakers, %d words, %.3f h -> %s/%s", name, s["utts"], s["speakers"],
                    s["words"], s["hours"], args.data_dir, name)


if __name__ == "__main__":
    main()
