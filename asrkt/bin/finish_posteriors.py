"""Finish a posterior dump: merge ``post.JOB.scp`` into ``post.scp`` and write ``post_info.yaml``; or verify
a finished one.

    python -m asrkt.bin.finish_posteriors [--data-dir data/train] [--model exp/teacher/final.pt] \
        exp/teacher/post_train 2
    python -m asrkt.bin.finish_posteriors --verify [--data-dir data/train] exp/teacher/post_train

Checks that all NJ jobs finished and agree, and reads every job's archive back: each job holds the utterances
and frames it reported, the dump's class count, and no utterance twice; with --model that the teacher is still
the one dumped; with --data-dir that its features are the ones the teacher saw, that every utterance with
features has posteriors exactly once, none other has, and each has the teacher's output length for its features.
post_info.yaml: kind, num_classes, topk, frame_shift_ms, subsampling, feature_config_hash,
teacher_checkpoint_sha1, temperature, num_utts, num_frames, bytes, checksum (sha1 over the utterances in C order
of utt id + the sha1 of its posteriors: independent of the number of jobs; see asrkt.transfer.dump).

--verify reads the finished dir back through post.scp (one pass over the archives, no model) and checks the
checksum and the counts against post_info.yaml: before training on posteriors copied from elsewhere, or after a
disk problem. Nothing is written. Exit status 1 with one line naming the file and utterance on a mismatch.
"""
from __future__ import annotations

import argparse

from asrkt.transfer.dump import finish_posteriors, verify_posteriors
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("post_dir", help="folder with post.JOB.{ark,scp,info.yaml}")
    p.add_argument("nj", type=int, nargs="?", help="number of dump jobs (not with --verify)")
    p.add_argument("--verify", action="store_true",
                   help="check a finished dir against its post_info.yaml (checksum, counts); writes nothing")
    p.add_argument("--data-dir", default=None, help="the (unsplit) data dir dumped, to check coverage")
    p.add_argument("--model", default=None, help="the teacher checkpoint, to check it did not change")
    return p


@main_wrapper
def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.verify:
        if args.nj is not None or args.model is not None:
            parser.error("--verify takes the posterior dir (and --data-dir) only")
        return verify_posteriors(args.post_dir, data_dir=args.data_dir)
    if args.nj is None:
        parser.error("give the number of dump jobs (or --verify)")
    return finish_posteriors(args.post_dir, args.nj, data_dir=args.data_dir, model_path=args.model)


if __name__ == "__main__":
    main()
