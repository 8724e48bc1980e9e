"""Copy matrices/vectors between Kaldi tables, like Kaldi's copy-feats.

  python -m asrkt.bin.copy_matrix scp:data/train/feats.scp ark,t:-          # dump as text
  python -m asrkt.bin.copy_matrix --text ark:a.ark ark:-                      # same, --text adds ',t'
  python -m asrkt.bin.copy_matrix --compression-method 2 ark:in.ark ark,scp:out.ark,out.scp
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from asrkt.io import MatrixWriter, parse_wspecifier, read_matrices
from asrkt.io.kaldi import quiet_broken_pipe
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def add_text_option(wspecifier: str) -> str:
    """``ark:x`` -> ``ark,t:x`` (validated first)."""
    parse_wspecifier(wspecifier)
    opts, target = wspecifier.split(":", 1)
    return wspecifier if "t" in opts.split(",") else f"{opts},t:{target}"


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rspecifier", help="input, e.g. scp:feats.scp, ark:a.ark, 'ark:gunzip -c a.gz |'")
    p.add_argument("wspecifier", help="output, e.g. ark,scp:b.ark,b.scp or ark,t:-")
    p.add_argument("--text", action="store_true", help="write Kaldi text form (same as adding ',t')")
    p.add_argument("--compression-method", type=int, default=0,
                   help="Kaldi compression method for matrices: 0 none (default), 1 auto, 2 speech-feature, "
                        "3 two-byte auto, 4 two-byte int, 5 one-byte auto, 6 one-byte uint, 7 one-byte 0..1")
    p.add_argument("--dtype", choices=["keep", "float32", "float64"], default="keep",
                   help="output precision (default keep: float32 stays float, float64 stays double)")
    args = p.parse_args(argv)
    setup_logging()
    with quiet_broken_pipe():
        wspec = add_text_option(args.wspecifier) if args.text else args.wspecifier
        dtype = None if args.dtype == "keep" else np.dtype(args.dtype)
        start = last_log = time.time()
        frames = 0
        with MatrixWriter(wspec, compression=args.compression_method or None, dtype=dtype) as w:
            for key, array in read_matrices(args.rspecifier):
                w.write(key, array)
                frames += array.shape[0] if array.ndim == 2 else 1
                if time.time() - last_log > 30:
                    last_log = time.time()
                    logger.info("copied %d objects, %.0f rows/s", w.num_written, frames / (last_log - start))
        elapsed = max(time.time() - start, 1e-9)
        logger.info("copied %d objects (%d rows) from %s to %s in %.1fs (%.0f rows/s)", w.num_written, frames,
                    args.rspecifier, wspec, elapsed, frames / elapsed)


if __name__ == "__main__":
    main()
