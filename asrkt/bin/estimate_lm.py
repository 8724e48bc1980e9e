"""Estimate an n-gram LM (ARPA) from the training transcripts alone, for decoding a CTC model through TLG.

Usage: python -m asrkt.bin.estimate_lm [--order 3] <text> <arpa>

<text> is the TRAINING set's Kaldi text; every word of it is in the vocabulary (the TLG graph spells each with
the tokenizer, so no pronunciation lexicon is needed). --order N >= 1: interpolated modified Kneser-Ney
(asrkt.hmm.lm); --order 0: "no LM", a loop over the training words, all equally likely. The hybrid objective
makes its LM with make_ngram_lm instead, which also maps words outside its lexicon to the OOV word.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.estimate_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default: 3; 0: a uniform word loop)")
    parser.add_argument("text", help="Kaldi text file of the training set")
    parser.add_argument("arpa", help="output ARPA file (written to a temporary name, then renamed)")
    args = parser.parse_args(argv)
    setup_logging()
    log_environment(logger)

    from asrkt.hmm.lm import lm_from_sentences
    from asrkt.utils.errors import fail
    from asrkt.utils.tables import read_table

    table = read_table(args.text)
    if not table:
        raise fail("no utterances to estimate an LM from", args.text)
    lm = lm_from_sentences((t.split() for t in table.values()), args.order)
    return lm.write(args.arpa)


if __name__ == "__main__":
    main()
