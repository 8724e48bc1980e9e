"""Train a monophone GMM-HMM (Kaldi's steps/train_mono.sh) and write alignments and frame targets.

Usage: python -m asrkt.bin.train_mono [options] <data-dir> <lang-dir> <exp-dir>

<data-dir> is a Kaldi data dir with text, feats.scp (log-mel fbank) and cmvn.scp; <lang-dir> comes from
prepare_lang_hmm. Writes into <exp-dir>: final.mdl.pkl (the wheel's TransitionModel, AmDiagGmm and tree),
tree (Kaldi binary), num_pdfs, train_info.yaml (per-iteration log-likelihood, Gaussians, alignment failures);
ali_<set>/ali.JOB.ark + ali.scp (transition ids per frame) for the training set and each --align-data dir;
targets/ with pdf.scp, pdf.ark, num_pdfs (what the frame_ce objective reads as --targets-dir), phones.scp
(ali-to-phones sequences) and ali_train_pdf.counts (pdf frame counts of the training set, for the priors).
Utterances that fail to align are counted, listed (train_info.yaml) and left out, as in Kaldi.

Features: see asrkt.hmm.gmm (default: MFCC from the stored fbank by the DCT, per-speaker CMN, deltas).
A finished <exp-dir> (train_info.yaml and targets/num_pdfs present) is reused unless --overwrite true.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    from asrkt.hmm.gmm import FeatureOptions, MonoOptions

    mo, fo = MonoOptions(), FeatureOptions()
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.train_mono", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--align-data", action="append", default=[],
                        help="another data dir (e.g. dev) to align with the final model (repeatable)")
    parser.add_argument("--nj", type=int, default=1, help="number of ali.JOB.ark shards per set (default 1)")
    parser.add_argument("--num-iters", type=int, default=mo.num_iters)
    parser.add_argument("--tot-gauss", type=int, default=mo.tot_gauss, help="target number of Gaussians")
    parser.add_argument("--max-iter-inc", type=int, default=mo.max_iter_inc)
    parser.add_argument("--realign-iters", default=" ".join(map(str, mo.realign_iters)))
    parser.add_argument("--beam", type=float, default=mo.beam)
    parser.add_argument("--max-utts", type=int, default=0, help="train on the first N utterances only (0: all)")
    parser.add_argument("--feat-kind", choices=("cepstra", "raw"), default=fo.kind)
    parser.add_argument("--cmvn", choices=("true", "false"), default="true")
    parser.add_argument("--delta-order", type=int, default=fo.delta_order)
    parser.add_argument("--overwrite", choices=("true", "false"), default="false")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("data_dir")
    parser.add_argument("lang_dir")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.gmm import is_trained, train_mono, write_outputs

    exp = Path(args.exp_dir)
    if is_trained(exp) and args.overwrite == "false":
        logger.info("%s: already trained, reused (--overwrite true to retrain)", exp)
        return exp
    opts = MonoOptions(num_iters=args.num_iters, tot_gauss=args.tot_gauss, max_iter_inc=args.max_iter_inc,
                       realign_iters=tuple(int(x) for x in args.realign_iters.split()), beam=args.beam,
                       max_utts=args.max_utts)
    fopts = FeatureOptions(kind=args.feat_kind, cmvn=args.cmvn == "true", delta_order=args.delta_order)
    alis = train_mono(args.data_dir, args.lang_dir, exp, opts, fopts, align_dirs=args.align_data)
    write_outputs(exp, alis, args.nj)
    logger.info("%s: model, alignments of %s and targets written", exp, ", ".join(alis))
    return exp


if __name__ == "__main__":
    main()
