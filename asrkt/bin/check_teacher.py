"""The teacher sanity gate of stage 4: refuse to dump the posteriors of a degenerate teacher.

    python -m asrkt.bin.check_teacher --model exp/teacher/final.pt --data-dir data/dev --lang-dir data/lang_char \
        [--max-error-rate 95]

Exit status 1 with one ERROR line when the teacher's dev error rate (its objective's metric) is at or above
--max-error-rate, or its outputs are degenerate (CTC: blanks only); see asrkt.transfer.gate.
"""
from __future__ import annotations

import argparse

from asrkt.transfer.gate import check_teacher
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="teacher checkpoint (exp/teacher/final.pt)")
    p.add_argument("--data-dir", required=True, help="dev data dir with features and transcripts")
    p.add_argument("--targets-dir", "--lang-dir", dest="targets_dir", required=True,
                   help="the targets dir the teacher was trained with (lang dir for CTC)")
    p.add_argument("--max-error-rate", type=float, default=95.0, help="refuse at or above this dev error rate (%%)")
    p.add_argument("--device", default="auto")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    return check_teacher(args.model, args.data_dir, args.targets_dir, args.max_error_rate, device=args.device)


if __name__ == "__main__":
    main()
