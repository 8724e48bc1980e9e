"""Estimate an n-gram LM from training transcripts (ARPA) and make G.fst: a lang dir ready for graphs.

Usage: python -m asrkt.bin.make_ngram_lm [--order 3] (--text data/train/text | --arpa lm.arpa) \
           <lang-dir> <out-dir>

With --text (a Kaldi text file of the TRAINING set only), an interpolated modified Kneser-Ney model of the given
order is estimated (asrkt.hmm.lm; words outside <lang-dir>/words.txt map to its OOV word, oov.txt) and written
as <out-dir>/lm.arpa. --order 0 is "no LM": a loop over the training text's words, all equally likely (the
grammar to score the acoustic model alone, within the vocabulary). With --arpa, that file is used as it is (checked line by line first; its words must be in
words.txt). <out-dir> gets a copy of <lang-dir> plus lm.arpa and G.fst (kaldilm.arpa2fst, #0 on backoff arcs),
as Kaldi's utils/format_lm.sh makes data/lang_test.

Reruns: when <out-dir> is complete and was made from the same inputs and order, it is reused; otherwise it is
refused unless --overwrite true.
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import yaml

from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.make_ngram_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="Kaldi text file of the training set to estimate the LM from")
    src.add_argument("--arpa", help="an existing ARPA LM to use instead")
    parser.add_argument("--order", type=int, default=3,
                        help="n-gram order with --text (default: 3; 0: no LM, a uniform word loop)")
    parser.add_argument("--overwrite", choices=("true", "false"), default="false",
                        help="true: remake <out-dir> even when it was made from other inputs")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("lang_dir", help="lang dir from prepare_lang_hmm")
    parser.add_argument("out_dir", help="output: lang dir with lm.arpa and G.fst")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)
    make(args.lang_dir, args.out_dir, text=args.text, arpa=args.arpa, order=args.order,
         overwrite=args.overwrite == "true")


def make(lang_dir, out_dir, text=None, arpa=None, order=3, overwrite=False) -> Path:
    from asrkt.hmm.lang import RESERVED_WORDS, load_lang, sha1_of
    from asrkt.hmm.lm import check_lm_words, lm_from_sentences, make_g_fst, read_arpa
    from asrkt.utils.tables import read_table

    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    if lang_dir.resolve() == out_dir.resolve():
        raise AsrktError("<out-dir> must differ from <lang-dir> (it gets a copy of it plus lm.arpa and G.fst)")
    lang = load_lang(lang_dir)
    source = text if text is not None else arpa
    wanted = {"source": str(source), "source_sha1": sha1_of(source), "order": order if text else None,
              "words_sha1": sha1_of(lang_dir / "words.txt")}
    info_path = out_dir / "lm_info.yaml"
    if info_path.is_file() and not overwrite:
        info = yaml.safe_load(info_path.read_text()) or {}
        changed = [k for k, v in wanted.items() if info.get(k) != v]
        if changed:
            raise AsrktError(f"{out_dir} was made from other inputs ({', '.join(changed)} differ): choose another "
                             "output dir, or remake it with --overwrite true")
        logger.info("%s: already made from %s, reused", out_dir, source)
        return out_dir

    if arpa is not None:  # a malformed file or one with unknown words fails here, naming the file
        check_lm_words(read_arpa(arpa), lang.word2id, arpa, lang_dir / "words.txt")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(lang_dir, tmp)
    for stale in ("lm.arpa", "G.fst", "lm_info.yaml"):
        (tmp / stale).unlink(missing_ok=True)
    if text is not None:
        table = read_table(text)
        if not table:
            raise fail("no utterances to estimate an LM from", text)
        vocab = set(lang.word2id) - set(RESERVED_WORDS)
        n_oov = sum(1 for t in table.values() for w in t.split() if w not in vocab)
        if n_oov:
            logger.warning("%s: %d tokens outside %s/words.txt are counted as %s", text, n_oov, lang_dir,
                           lang.oov_word)
        lm = lm_from_sentences((t.split() for t in table.values()), order, vocab=vocab, unk=lang.oov_word)
        lm.write(tmp / "lm.arpa")
    else:
        shutil.copyfile(arpa, tmp / "lm.arpa")
    make_g_fst(tmp / "lm.arpa", tmp / "words.txt", tmp / "G.fst")
    (tmp / "lm_info.yaml").write_text(yaml.safe_dump(wanted, sort_keys=False))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    logger.info("wrote %s: lm.arpa and G.fst", out_dir)
    return out_dir


if __name__ == "__main__":
    main()
