"""Dump a teacher's per-frame outputs for one data dir (one job of a split) to a Kaldi archive.

    python -m asrkt.bin.dump_posteriors --model exp/teacher/final.pt --data-dir data/train/split2/1 \
        --wspecifier ark,scp:exp/teacher/post_train/post.1.ark,exp/teacher/post_train/post.1.scp \
        [--output log_probs|logits] [--topk K] [--batch-frames N] [--device auto|cpu|cuda]

Dense float32 (frames x classes) log-probabilities by default (a temperature can be applied later), or raw
logits; with ``--topk K`` (K > 0) Kaldi's Posterior format (K class ids per frame, probabilities renormalised
over the K kept), which Kaldi nnet1 tools read. Then run ``asrkt.bin.finish_posteriors`` on the folder.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.transfer.dump import OUTPUTS, dump_posteriors
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="teacher checkpoint (exp/teacher/final.pt)")
    p.add_argument("--data-dir", required=True, help="data dir with feats.scp, cmvn.scp, feats_info.yaml")
    p.add_argument("--wspecifier", required=True, help="e.g. ark,scp:post.1.ark,post.1.scp")
    p.add_argument("--output", choices=OUTPUTS, default="log_probs", help="dense values stored (default log_probs)")
    p.add_argument("--topk", type=int, default=0, help="K > 0: top-K Kaldi Posterior instead of dense (default 0)")
    p.add_argument("--batch-frames", type=int, default=20000, help="padded input frames per batch")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--in-memory", action="store_true", help="load all features before starting")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    log_environment(logger)
    if args.num_threads > 0:
        import torch

        torch.set_num_threads(args.num_threads)
    return dump_posteriors(args.model, args.data_dir, args.wspecifier, output=args.output, topk=args.topk,
                           batch_frames=args.batch_frames, device=args.device, in_memory=args.in_memory)


if __name__ == "__main__":
    main()
