"""Copy Kaldi Posteriors between tables, like Kaldi's copy-post.

  python -m asrkt.bin.copy_post scp:exp/dnn/post_train/post.scp ark,t:- | head
  python -m asrkt.bin.copy_post 'ark:cat post.1.ark post.2.ark |' ark,scp:post.ark,post.scp
"""
from __future__ import annotations

import argparse
import logging

from asrkt.bin.copy_matrix import add_text_option
from asrkt.io import PosteriorWriter, read_posteriors
from asrkt.io.kaldi import quiet_broken_pipe
from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rspecifier", help="input Posterior table, e.g. scp:post.scp or ark:post.1.ark")
    p.add_argument("wspecifier", help="output, e.g. ark,scp:post.ark,post.scp or ark,t:-")
    p.add_argument("--text", action="store_true", help="write Kaldi text form (same as adding ',t')")
    args = p.parse_args(argv)
    setup_logging()
    with quiet_broken_pipe():
        wspec = add_text_option(args.wspecifier) if args.text else args.wspecifier
        frames = 0
        with PosteriorWriter(wspec) as w:
            for key, post in read_posteriors(args.rspecifier):
                w.write(key, post)
                frames += len(post)
        logger.info("copied %d posteriors (%d frames) from %s to %s", w.num_written, frames, args.rspecifier, wspec)


if __name__ == "__main__":
    main()
