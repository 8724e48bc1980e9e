"""Score a hypothesis text against a reference text (Kaldi ``text`` format) and print Kaldi's lines.

    python -m asrkt.bin.score data/test/text exp/x/decode_test/hyp.txt [--label exp/x/decode_test]
        [--per-utt per_utt.txt] [--strict]

    python -m asrkt.bin.score --decode-dir exp/x/decode_test --data-dir data/test --nj N

Prints ``%WER``, ``%SER``, ``%CER`` and ``Scored N sentences, M not present in hyp.`` on stdout.
References without a hypothesis count as deletions (``--strict``: an error instead).

With --decode-dir: merges the N decoding jobs of a split data dir (``<decode-dir>/splitN/<job>/``, written by
``asrkt.bin.decode --no-score``) into the decode folder and scores it against ``<data-dir>/text`` (hyp.txt,
ref.txt, per_utt.txt, wer.txt, score.yaml, as a single asrkt.bin.decode writes them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from asrkt.data.kaldi_dir import read_table
from asrkt.score.wer import compute_wer, per_utt_lines, summary_lines
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import fail
from asrkt.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", nargs="?", help="reference text: 'utt word word ...' per line")
    p.add_argument("hyp", nargs="?", help="hypothesis text, same format")
    p.add_argument("--decode-dir", default=None, help="merge and score the split decoding jobs of this folder")
    p.add_argument("--data-dir", default=None, help="with --decode-dir: the whole data dir (its text is the ref)")
    p.add_argument("--nj", type=int, default=None, help="with --decode-dir: the number of decoding jobs")
    p.add_argument("--label", default="", help="appended to the %%WER line (Kaldi puts the decode dir there)")
    p.add_argument("--per-utt", default=None, help="write per-utterance alignments here")
    p.add_argument("--strict", action="store_true", help="fail if a reference has no hypothesis")
    return p


@main_wrapper
def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.decode_dir:
        if args.ref or args.hyp or not args.data_dir or not args.nj:
            parser.error("--decode-dir takes --data-dir and --nj, and no ref/hyp files")
        from asrkt.score.decode_dir import merge_decode_jobs

        score = merge_decode_jobs(args.decode_dir, args.data_dir, args.nj)
        wer = Path(args.decode_dir) / "wer.txt"
        if wer.is_file():
            print(wer.read_text(encoding="utf-8"), end="")
        return score
    if not (args.ref and args.hyp):
        parser.error("need <ref> and <hyp> (or --decode-dir)")
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
