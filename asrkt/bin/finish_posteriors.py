"""Finish a posterior dump: merge ``post.JOB.scp`` into ``post.scp`` and write ``post_info.yaml``.

    python -m asrkt.bin.finish_posteriors [--data-dir data/train] [--model exp/teacher/final.pt] \
        exp/teacher/post_train 2

Checks that all NJ jobs finished and agree; with --model that the teacher is still the one dumped; with
--data-dir that its features are the ones the teacher saw and every utterance has posteriors.
post_info.yaml: kind, num_classes, topk, frame_shift_ms, subsampling, feature_config_hash,
teacher_checkpoint_sha1, temperature, num_utts, num_frames, bytes.
"""
from __future__ import annotations

import argparse

from asrkt.transfer.dump import finish_posteriors
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("post_dir", help="folder with post.JOB.{ark,scp,info.yaml}")
    p.add_argument("nj", type=int, help="number of dump jobs")
    p.add_argument("--data-dir", default=None, help="the (unsplit) data dir dumped, to check coverage")
    p.add_argument("--model", default=None, help="the teacher checkpoint, to check it did not change")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    return finish_posteriors(args.post_dir, args.nj, data_dir=args.data_dir, model_path=args.model)


if __name__ == "__main__":
    main()
