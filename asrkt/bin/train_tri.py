"""Train a context-dependent triphone GMM-HMM (Kaldi's steps/train_deltas.sh, "tri1") from a monophone system.

Usage: python -m asrkt.bin.train_tri [options] <data-dir> <lang-dir> <mono-dir> <exp-dir>

<mono-dir> is a train_mono output (its model gives the features; its ali_train/ alignments of <data-dir>, or
--ali-dir, give the tree statistics); <lang-dir> is the lang dir it was trained with (phones/sets.int,
roots.txt and context_indep.int are read for the questions and the tree roots). See asrkt.hmm.tri for the steps.

Writes into <exp-dir> what train_mono writes, so make_graph, decode_gmm and the frame_ce objective use it
unchanged: final.mdl.pkl, tree (Kaldi binary, context width 3), num_pdfs, train_info.yaml (tree figures,
per-iteration log-likelihood, Gaussians, alignment failures), questions.txt (the phone-set questions);
ali_<set>/ali.JOB.ark + ali.scp for the training set and each --align-data dir; targets/ with pdf.scp, pdf.ark,
num_pdfs, phones.scp and ali_train_pdf.counts. A finished <exp-dir> (train_info.yaml and targets/num_pdfs) is
reused unless --overwrite true.
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
    from asrkt.hmm.tri import TriOptions

    o = TriOptions()
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.train_tri", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ali-dir", default=None, help="monophone alignments of <data-dir> (default "
                                                        "<mono-dir>/ali_train)")
    parser.add_argument("--align-data", action="append", default=[],
                        help="another data dir (e.g. dev) to align with the final model (repeatable)")
    parser.add_argument("--nj", type=int, default=1, help="number of ali.JOB.ark shards per set (default 1)")
    parser.add_argument("--num-leaves", type=int, default=o.num_leaves, help="maximum tree leaves (pdfs)")
    parser.add_argument("--tot-gauss", type=int, default=o.tot_gauss, help="target number of Gaussians")
    parser.add_argument("--num-iters", type=int, default=o.num_iters)
    parser.add_argument("--max-iter-inc", type=int, default=o.max_iter_inc)
    parser.add_argument("--realign-iters", default=" ".join(map(str, o.realign_iters)))
    parser.add_argument("--thresh", type=float, default=o.thresh, help="minimum log-likelihood gain of a split")
    parser.add_argument("--cluster-thresh", type=float, default=o.cluster_thresh,
                        help="leaf merging threshold (<0: the smallest split's gain, 0: no merging)")
    parser.add_argument("--boost-silence", type=float, default=o.boost_silence,
                        help="scale of the optional silence's likelihood in the re-alignments (Kaldi's "
                             "gmm-boost-silence; 1.0: none)")
    parser.add_argument("--beam", type=float, default=o.beam)
    parser.add_argument("--retry-beam", type=float, default=o.retry_beam)
    parser.add_argument("--max-utts", type=int, default=0, help="train on the first N utterances only (0: all)")
    parser.add_argument("--overwrite", choices=("true", "false"), default="false")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("data_dir")
    parser.add_argument("lang_dir")
    parser.add_argument("mono_dir")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.gmm import is_trained, write_outputs
    from asrkt.hmm.tri import train_tri

    exp = Path(args.exp_dir)
    if is_trained(exp) and args.overwrite == "false":
        logger.info("%s: already trained, reused (--overwrite true to retrain)", exp)
        return exp
    opts = TriOptions(num_leaves=args.num_leaves, tot_gauss=args.tot_gauss, num_iters=args.num_iters,
                      max_iter_inc=args.max_iter_inc, realign_iters=tuple(int(x) for x in args.realign_iters.split()),
                      thresh=args.thresh, cluster_thresh=args.cluster_thresh, beam=args.beam,
                      retry_beam=args.retry_beam, boost_silence=args.boost_silence, max_utts=args.max_utts)
    alis = train_tri(args.data_dir, args.lang_dir, args.mono_dir, exp, opts, ali_dir=args.ali_dir,
                     align_dirs=args.align_data)
    model = write_outputs(exp, alis, args.nj)
    logger.info("%s: model (%d pdfs, %d Gaussians), alignments of %s and targets written", exp, model.num_pdfs,
                model.am.num_gauss, ", ".join(alis))
    return exp


if __name__ == "__main__":
    main()
