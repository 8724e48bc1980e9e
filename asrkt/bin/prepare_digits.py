"""Stage 0 of egs/digits: synthesise the connected-digits corpus with espeak-ng and write its data dirs.

    python -m asrkt.bin.prepare_digits --size default --seed 1 --audio-dir downloads/digits_default_seed1 \\
        --data-dir data --nj 2

Writes ``<audio-dir>/<set>/<spk>/<utt>.wav`` (16 kHz 16-bit PCM), ``<audio-dir>/manifest.yaml`` and Kaldi
data dirs ``<data-dir>/{train,dev,test}``. Same size and seed: the audio is reused (byte-identical anyway).
"""
from __future__ import annotations

import argparse
import logging

from asrkt.corpora.digits import SETS, SIZES, prepare_digits
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger("asrkt.bin.prepare_digits")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="default",
                   help="tiny: 40/10/10 utterances (tests); default: about 1.5 h train, 10 min dev and test")
    p.add_argument("--seed", type=int, default=1, help="seed of the voice split and every utterance's parameters")
    p.add_argument("--audio-dir", required=True, help="where the WAVs and manifest.yaml go")
    p.add_argument("--data-dir", required=True, help="parent of the Kaldi data dirs train, dev, test")
    p.add_argument("--nj", type=int, default=1, help="parallel synthesis processes (the output does not depend on it)")
    p.add_argument("--log-level", default="INFO")
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.nj < 1:
        raise AsrktError(f"--nj must be at least 1, got {args.nj}")
    log_environment(logger, {"size": args.size, "seed": args.seed, "audio dir": args.audio_dir})
    manifest = prepare_digits(args.size, args.seed, args.audio_dir, args.data_dir, nj=args.nj)
    for s in SETS:
        logger.info("%s: %d utterances, %d voices, %.3f h -> %s/%s", s, manifest["counts"][s],
                    len(manifest["voices"][s]), manifest["hours"][s], args.data_dir, s)


if __name__ == "__main__":
    main()
