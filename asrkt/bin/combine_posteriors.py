"""Combine several teachers' dumped posteriors into one post dir, and/or bring them to a student's frame rate.

    python -m asrkt.bin.combine_posteriors [--method average|weighted|dev-error] [--weights 0.7,0.3] \\
        [--dev-errors 12.1,14.0 | --dev-error-source train|decode_<set> [--teacher-exp-dirs a,b]] [--tau 1] \\
        [--to-subsampling S [--conversion pool|select]] [--topk K] [--data-dir data/train] [--overwrite true] \\
        <out-post-dir> <post-dir-1> [<post-dir-2> ...]

The inputs are finished post dirs of one data set (dump_posteriors + finish_posteriors), dense or top-k,
mixed freely; the output is a post dir of the same layout (post.scp, post.1.ark, post_info.yaml with each
teacher's provenance, the weights and the method) that asrkt.bin.train reads with --train-post/--valid-post.
The output is the weighted mean of the teachers' probabilities: average (equal weights), weighted (--weights),
dev-error (softmax(-error / tau) of each teacher's dev error rate in %, read from its exp dir: the dev metric at
the best epoch of train_info.yaml/summary.tsv, or --dev-error-source decode_dev for the WER of
decode_dev/score.yaml; or given with --dev-errors).

--to-subsampling S: the student's model.subsampling, a multiple of each teacher's: teacher frames are pooled
(mean of each group, renormalised) or selected (the middle frame of each group) to ceil(frames / k), the
student's output length. With --data-dir, every utterance's output frame count is checked against the
student's exactly, and the features against the teachers'. One input and --to-subsampling: a rate conversion.

The output is written under a temporary name and renamed when complete; a rerun with the same inputs and
options keeps a finished output, a different one is refused without --overwrite true.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.transfer.combine import METHODS, CombineOptions, combine_posteriors
from asrkt.transfer.framerate import CONVERSIONS
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


def number_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got '{text}'") from None


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="output post dir")
    p.add_argument("post_dirs", nargs="+", help="input post dirs (exp/<teacher>/post_<set>), same utterances")
    p.add_argument("--method", choices=METHODS, default="average", help="how the teachers are weighted")
    p.add_argument("--weights", type=number_list, default=None, help="--method weighted: one weight per input")
    p.add_argument("--dev-errors", type=number_list, default=None,
                   help="--method dev-error: each teacher's dev error rate in %% (default: read from its exp dir)")
    p.add_argument("--dev-error-source", default="train",
                   help="train (dev metric at the best epoch, train_info.yaml + summary.tsv) or decode_<set> "
                        "(WER of decode_<set>/score.yaml)")
    p.add_argument("--teacher-exp-dirs", default=None,
                   help="comma-separated exp dirs of the teachers (default: the folders of their checkpoints)")
    p.add_argument("--tau", type=float, default=1.0, help="--method dev-error: softmax temperature, in %% points")
    p.add_argument("--to-subsampling", type=int, default=None,
                   help="the student's model.subsampling (default: the teachers', which must then agree)")
    p.add_argument("--conversion", choices=CONVERSIONS, default="pool", help="frame-rate conversion (default pool)")
    p.add_argument("--topk", type=int, default=None,
                   help="output: 0 dense log-probabilities, K > 0 top-K Kaldi Posteriors (default: top-k when "
                        "every input is top-k, else dense)")
    p.add_argument("--data-dir", default=None, help="the data dir of these posteriors, to check frame counts")
    p.add_argument("--overwrite", choices=("true", "false"), default="false",
                   help="true: replace an existing output made from other inputs or options")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    log_environment(logger)
    if args.teacher_exp_dirs is not None and not args.teacher_exp_dirs.strip():
        raise AsrktError("--teacher-exp-dirs is empty")
    opts = CombineOptions(method=args.method, weights=args.weights, dev_errors=args.dev_errors,
                          dev_error_source=args.dev_error_source, tau=args.tau,
                          teacher_exp_dirs=args.teacher_exp_dirs.split(",") if args.teacher_exp_dirs else None,
                          to_subsampling=args.to_subsampling, conversion=args.conversion, topk=args.topk)
    return combine_posteriors(args.out_dir, args.post_dirs, opts, data_dir=args.data_dir,
                              overwrite=args.overwrite == "true")


if __name__ == "__main__":
    main()
