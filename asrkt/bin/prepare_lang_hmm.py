"""Make a Kaldi lang dir for the hybrid (HMM) objective from a pronunciation lexicon.

Usage: python -m asrkt.bin.prepare_lang_hmm [--text data/train/text ...] <lexicon> <lang-dir>

<lexicon> holds ``WORD PH1 PH2 ...`` lines (Kaldi or CMU format; ``WORD(2)`` is a variant of WORD, ``;;;``
starts a comment), e.g. AN4's etc/an4.dic. Writes phones.txt, words.txt, lexicon*.txt, L.fst, L_disambig.fst,
topo, oov.txt and phones/ into <lang-dir> (see asrkt.hmm.lang for the choices: position-independent phones,
optional silence SIL, <UNK> pronounced SPN, disambiguation symbols #0 #1 ...).

Every word of each --text file must be in the lexicon; missing words are an error that lists them with an
utterance each, unless --allow-oov true (they are then mapped to <UNK> when graphs and LMs are made).

When <lang-dir> is already complete and was made from the same lexicon, texts and options, it is reused;
otherwise it is refused unless --overwrite true. (This tool is not prepare_lang, which makes the CTC tokenizer.)
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

import yaml

from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.prepare_lang_hmm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", action="append", default=[],
                        help="Kaldi text file whose words must be in the lexicon (repeatable)")
    parser.add_argument("--allow-oov", choices=("true", "false"), default="false",
                        help="true: words of --text missing from the lexicon map to --oov-word (warning)")
    parser.add_argument("--sil-phone", default="SIL", help="optional silence phone (default: SIL)")
    parser.add_argument("--oov-word", default="<UNK>", help="unknown word (default: <UNK>)")
    parser.add_argument("--oov-phone", default="SPN", help="its pronunciation, a silence phone (default: SPN)")
    parser.add_argument("--sil-prob", type=float, default=0.5, help="optional silence probability (default 0.5)")
    parser.add_argument("--num-sil-states", type=int, default=5)
    parser.add_argument("--num-nonsil-states", type=int, default=3)
    parser.add_argument("--overwrite", choices=("true", "false"), default="false",
                        help="true: remake <lang-dir> even when it was made from other inputs")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("lexicon", help="pronunciation lexicon (WORD PH1 PH2 ...)")
    parser.add_argument("lang_dir", help="output lang dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.lang import LangOptions, make_lang, sha1_of

    opts = LangOptions(sil_phone=args.sil_phone, oov_word=args.oov_word, oov_phone=args.oov_phone,
                       sil_prob=args.sil_prob, num_sil_states=args.num_sil_states,
                       num_nonsil_states=args.num_nonsil_states)
    allow_oov = args.allow_oov == "true"
    lang_dir = Path(args.lang_dir)
    info_path = lang_dir / "lang_info.yaml"
    if info_path.is_file() and args.overwrite == "false":
        info = yaml.safe_load(info_path.read_text()) or {}
        wanted = {"options": asdict(opts), "lexicon_sha1": sha1_of(args.lexicon),
                  "texts": {str(t): sha1_of(t) for t in args.text}, "allow_oov": allow_oov}
        changed = [k for k, v in wanted.items() if info.get(k) != v]
        if changed:
            raise AsrktError(f"{lang_dir} was made from other inputs or options ({', '.join(changed)} differ): "
                             "choose another lang dir, or remake it with --overwrite true")
        logger.info("%s: already made from %s with these options, reused", lang_dir, args.lexicon)
        return lang_dir
    make_lang(args.lexicon, lang_dir, opts, texts=args.text, allow_oov=allow_oov)
    return lang_dir


if __name__ == "__main__":
    main()
