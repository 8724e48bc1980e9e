"""Convert between Kaldi data dirs and lhotse manifests (jsonl.gz), with lhotse's own kaldi functions.

    python -m asrkt.bin.lhotse_bridge import data/train manifests [--prefix train] [--sampling-rate 16000]
        -> manifests/train_recordings.jsonl.gz, manifests/train_supervisions.jsonl.gz
    python -m asrkt.bin.lhotse_bridge export manifests/train_recordings.jsonl.gz \\
        manifests/train_supervisions.jsonl.gz data/train
"""
from __future__ import annotations

import argparse
from pathlib import Path

from asrkt.data.lhotse_bridge import kaldi_dir_to_lhotse, lhotse_to_kaldi_dir, write_manifests
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="Kaldi data dir -> lhotse manifests")
    imp.add_argument("data_dir")
    imp.add_argument("manifest_dir")
    imp.add_argument("--prefix", help="manifest name prefix (default: the data dir's name)")
    imp.add_argument("--sampling-rate", type=int, help="default: read from the audio")
    exp = sub.add_parser("export", help="lhotse manifests -> Kaldi data dir")
    exp.add_argument("recordings", help="recordings manifest (.jsonl.gz)")
    exp.add_argument("supervisions", help="supervisions manifest (.jsonl.gz)")
    exp.add_argument("data_dir")
    args = p.parse_args(argv)
    setup_logging()
    if args.command == "import":
        recs, sups = kaldi_dir_to_lhotse(args.data_dir, sampling_rate=args.sampling_rate)
        for path in write_manifests(recs, sups, args.manifest_dir, args.prefix or Path(args.data_dir).name):
            print(path)
    else:
        print(f"Exported {lhotse_to_kaldi_dir(args.recordings, args.supervisions, args.data_dir)}")


if __name__ == "__main__":
    main()
