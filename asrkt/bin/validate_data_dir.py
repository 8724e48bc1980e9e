"""Check a Kaldi data dir (Kaldi's validate_data_dir.sh); exit 1 with the problems listed if it is invalid.

    python -m asrkt.bin.validate_data_dir [--no-feats] [--no-text] [--no-wav] [--check-audio] data/train
"""
from __future__ import annotations

import argparse

from asrkt.data.validate import validate_data_dir
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-feats", action="store_true", help="do not check feats.scp, utt2num_frames, cmvn.scp")
    p.add_argument("--no-text", action="store_true", help="text is not required (still checked if present)")
    p.add_argument("--no-wav", action="store_true", help="do not require or check wav.scp and segments")
    p.add_argument("--check-audio", action="store_true",
                   help="read every recording: readable, non-empty, long enough for its segments")
    p.add_argument("data_dir")
    args = p.parse_args(argv)
    setup_logging()
    summary = validate_data_dir(args.data_dir, no_feats=args.no_feats, no_text=args.no_text,
                                no_wav=args.no_wav, check_audio=args.check_audio)
    print(f"Successfully validated data directory {summary}")


if __name__ == "__main__":
    main()
