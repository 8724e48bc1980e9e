"""Train the output-unit tokenizer on training transcripts and write a lang dir.

Usage: python -m asrkt.bin.prepare_lang --kind char|bpe|unigram [--vocab-size N] <train-text> <lang-dir>

<train-text> is a Kaldi ``text`` file (``utt word word ...``) of the TRAINING set only. Writes
<lang-dir>/tokens.txt (``<blk> 0`` first), <lang-dir>/bpe.model (bpe, unigram) and <lang-dir>/tokenizer.yaml.
For bpe/unigram, --vocab-size counts every class including <blk> and <unk>.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.data.kaldi_dir import read_table
from asrkt.targets.tokenizer import KINDS, train_tokenizer
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.prepare_lang", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=KINDS, default="char", help="output units (default: char)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="number of classes incl. <blk> and <unk> (bpe/unigram; required there)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("text", help="Kaldi text file of the training set")
    parser.add_argument("lang_dir", help="output lang dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)
    text = read_table(args.text)
    tok = train_tokenizer(text.values(), args.lang_dir, kind=args.kind, vocab_size=args.vocab_size,
                          source=args.text)
    logger.info("wrote %s: %s tokens, %d classes including the blank", args.lang_dir, tok.kind, tok.num_classes)


if __name__ == "__main__":
    main()
