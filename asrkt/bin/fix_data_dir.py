"""Repair a Kaldi data dir (Kaldi's fix_data_dir.sh): sort tables, drop duplicate lines, keep only the
utterances present in every table, rebuild spk2utt. Changed files are backed up in <dir>/.backup/ first.

    python -m asrkt.bin.fix_data_dir data/train
"""
from __future__ import annotations

import argparse

from asrkt.data.validate import fix_data_dir
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    args = p.parse_args(argv)
    setup_logging()
    report = fix_data_dir(args.data_dir)
    dropped = sum(len(v) for v in report.dropped.values())
    print(f"{report.path}: {report.num_utts} utterances kept, {dropped} dropped, "
          f"rewrote: {' '.join(report.changed) or 'nothing'}"
          + (f" (old files in {report.backup_dir})" if report.changed and report.backup_dir else ""))


if __name__ == "__main__":
    main()
