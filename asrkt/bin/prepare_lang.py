"""Train the output-unit tokenizer on training transcripts and write a lang dir.

Usage: python -m asrkt.bin.prepare_lang --kind char|bpe|unigram [--vocab-size N] <train-text> <lang-dir>

<train-text> is a Kaldi ``text`` file (``utt word word ...``) of the TRAINING set only. Writes
<lang-dir>/tokens.txt (``<blk> 0`` first), <lang-dir>/bpe.model (bpe, unigram) and <lang-dir>/tokenizer.yaml.
For bpe/unigram, --vocab-size counts every class including <blk> and <unk>.

A lang dir is tied to its training text (``text_sha1`` in tokenizer.yaml): when <lang-dir> is already complete,
it is reused if it was made from the same text with the same kind and size, and refused otherwise (a tokenizer
trained on other text would silently give other classes), unless --overwrite true. ``--check`` only checks.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asrkt.data.kaldi_dir import read_table
from asrkt.targets.tokenizer import KINDS, check_tokenizer_text, read_tokenizer_info, train_tokenizer
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.prepare_lang", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=KINDS, default="char", help="output units (default: char)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="number of classes incl. <blk> and <unk> (bpe/unigram; required there)")
    parser.add_argument("--overwrite", choices=("true", "false"), default="false",
                        help="true: retrain even when <lang-dir> holds a tokenizer of other text or settings")
    parser.add_argument("--check", action="store_true",
                        help="only check that <lang-dir> was made from <train-text>; train nothing")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("text", help="Kaldi text file of the training set")
    parser.add_argument("lang_dir", help="output lang dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)
    lang_dir = Path(args.lang_dir)
    if args.check or ((lang_dir / "tokenizer.yaml").is_file() and args.overwrite == "false"):
        text_sha1 = check_tokenizer_text(lang_dir, args.text)
        info = read_tokenizer_info(lang_dir)
        wanted = {"kind": args.kind}
        if args.kind != "char" and args.vocab_size is not None:
            wanted["vocab_size"] = args.vocab_size
        changed = {k: (info.get(k), v) for k, v in wanted.items() if info.get(k) != v}
        if changed:
            raise AsrktError(f"{lang_dir} holds a tokenizer with other settings than asked ("
                             + ", ".join(f"{k} {a} instead of {b}" for k, (a, b) in changed.items())
                             + "): choose another lang dir, or retrain it with --overwrite true")
        logger.info("%s: tokenizer of %s (text_sha1 %s) already there, reused", lang_dir, args.text, text_sha1)
        return lang_dir
    text = read_table(args.text)
    tok = train_tokenizer(text.values(), args.lang_dir, kind=args.kind, vocab_size=args.vocab_size,
                          source=args.text)
    logger.info("wrote %s: %s tokens, %d classes including the blank", args.lang_dir, tok.kind, tok.num_classes)


if __name__ == "__main__":
    main()
