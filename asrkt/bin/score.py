"""Score a hypothesis text against a reference text (Kaldi ``text`` format) and print Kaldi's lines.

    python -m asrkt.bin.score data/test/text exp/x/decode_test/hyp.txt [--label exp/x/decode_test]
        [--per-utt per_utt.txt] [--strict]

Prints ``%WER``, ``%SER``, ``%CER`` and ``Scored N sentences, M not present in hyp.`` on stdout.
References without a hypothesis count as deletions (``--strict``: an error instead).
"""
from __future__ import annotations

import argparse

from asrkt.data.kaldi_dir import read_table
from asrkt.score.wer import compute_wer, per_utt_lines, summary_lines
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import fail
from asrkt.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", help="reference text: 'utt word word ...' per line")
    p.add_argument("hyp", help="hypothesis text, same format")
    p.add_argument("--label", default="", help="appended to the %%WER line (Kaldi puts the decode dir there)")
    p.add_argument("--per-utt", default=None, help="write per-utterance alignments here")
    p.add_argument("--strict", action="store_true", help="fail if a reference has no hypothesis")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    refs = read_table(args.ref, check_sorted=False)
    hyps = read_table(args.hyp, check_sorted=False)
    result = compute_wer(refs, hyps)
    if args.strict and result.missing:
        raise fail(f"{len(result.missing)} reference utterances have no hypothesis, e.g. "
                   f"{', '.join(result.missing[:5])}", args.hyp)
    if args.per_utt:
        atomic_write_text(args.per_utt, "\n".join(per_utt_lines(result)) + "\n")
    print("\n".join(summary_lines(result, args.label)))
    return result


if __name__ == "__main__":
    main()
