"""Decode a data dir with a trained CTC model and score it against the data dir's text.

    python -m asrkt.bin.decode --model exp/x/final.pt --data-dir data/test --lang-dir data/lang_char \
        --out-dir exp/x/decode_test [--config conf/decode.yaml] [--method greedy] [--batch-frames N]
        [--device auto|cpu|cuda] [--no-score]

Writes hyp.txt, ref.txt, per_utt.txt, wer.txt (Kaldi's %WER line), decode_config.yaml and score.yaml (WER, CER,
counts, model sha1, decode time, real-time factor) into --out-dir.

In a recipe, decoding runs as a job array over a split data dir (so that a Slurm cmd.sh sends it to the cluster):
    $decode_cmd JOB=1:N exp/x/decode_test/log/decode.JOB.log python -m asrkt.bin.decode ... \
        --data-dir data/test/splitN/JOB --out-dir exp/x/decode_test/splitN/JOB --no-score
    python -m asrkt.bin.score --decode-dir exp/x/decode_test --data-dir data/test --nj N   # merge, then score
"""
from __future__ import annotations

import argparse
import logging

from asrkt.decode.search import DecodeConfig
from asrkt.decode.run import decode_data_dir
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError
from asrkt.utils.config import add_config_arguments, config_from_args, to_yaml
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint (exp/x/final.pt)")
    p.add_argument("--data-dir", required=True, help="data dir with feats.scp, cmvn.scp (and text, to score)")
    p.add_argument("--lang-dir", required=True, help="the lang dir the model was trained with")
    p.add_argument("--out-dir", required=True, help="decode folder (exp/x/decode_<set>)")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-score", action="store_true",
                   help="write hyp.txt and score.yaml without scores: one job of a split decode, scored after the "
                        "merge by asrkt.bin.score --decode-dir")
    p.add_argument("--acoustic-scales", default="",
                   help="WFST decoders, tuning on dev: space-separated scales; the model runs once and each scale "
                        "is searched into <out-dir>/acwt_<s>/ (then: python -m asrkt.bin.pick_scale <out-dir>)")
    add_config_arguments(p, DecodeConfig)
    return p


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    cfg = config_from_args(args, DecodeConfig)
    setup_logging()
    log_environment(logger, {"decode config": to_yaml(cfg).strip().replace("\n", ", ")})
    if args.num_threads > 0:
        import torch

        torch.set_num_threads(args.num_threads)
    scales = [float(s) for s in args.acoustic_scales.split()]
    if scales and args.no_score:
        raise AsrktError("--acoustic-scales tunes on a dev set, which needs scoring: drop --no-score")
    return decode_data_dir(args.model, args.data_dir, args.lang_dir, args.out_dir, cfg, do_score=not args.no_score,
                           acoustic_scales=scales)


if __name__ == "__main__":
    main()
