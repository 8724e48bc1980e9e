"""Make the TLG graph for WFST decoding of a CTC model with an n-gram LM (icefall's HLG, sherpa's TLG).

Usage: python -m asrkt.bin.make_tlg [--overwrite true] <lang-dir> <arpa> <text> <graph-dir>

<lang-dir> is the CTC model's tokenizer lang dir (prepare_lang: tokens.txt, tokenizer.yaml); <arpa> an ARPA LM,
or an LM dir holding lm.arpa (make_ngram_lm's output); <text> the training set's Kaldi text, whose words (spelled
by the tokenizer) are the vocabulary. Writes <graph-dir>/ (TLG.fst, words.txt, tokens.txt, lexicon.txt,
tlg_info.yaml); see asrkt.hmm.tlg. Decode with python -m asrkt.bin.decode --method tlg --graph <graph-dir>
--acoustic-scale 1.0 ... (tune the scale on dev).

Reruns: a complete <graph-dir> made from the same inputs is reused; one made from other inputs is refused unless
--overwrite true.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.make_tlg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overwrite", choices=("true", "false"), default="false",
                        help="true: remake <graph-dir> even when it was made from other inputs")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("lang_dir", help="the CTC model's tokenizer lang dir")
    parser.add_argument("arpa", help="ARPA LM file, or an LM dir with lm.arpa")
    parser.add_argument("text", help="Kaldi text of the training set (the vocabulary)")
    parser.add_argument("graph_dir", help="output graph dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.tlg import make_tlg
    from asrkt.targets.tokenizer import Tokenizer

    return make_tlg(Tokenizer.load(args.lang_dir), args.lang_dir, args.arpa, args.text, args.graph_dir,
                    overwrite=args.overwrite == "true")


if __name__ == "__main__":
    main()
