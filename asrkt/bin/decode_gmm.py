"""Make the HCLG graph of a GMM system and decode data dirs with it (Kaldi's mkgraph.sh + decode.sh).

Usage: python -m asrkt.bin.decode_gmm [options] <lang-dir> <exp-dir> <data-dir> [<data-dir> ...]

<lang-dir> must hold G.fst (make_ngram_lm); <exp-dir> is a train_mono output. The graph goes to
<exp-dir>/<graph-name> (default graph; reused when present, unless --overwrite true), each decode to
<exp-dir>/<out-prefix><set>/ (default decode_; one acwt_<s>/ folder per acoustic scale when several are given),
scored in Kaldi's %WER form. Tuning, as stage 7 does it: the dev set at several scales into tune_<set>/,
``python -m asrkt.bin.pick_scale exp/x/tune_<set>`` prints the best, the test sets are decoded at that one.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asrkt.utils.cli import main_wrapper
from asrkt.utils.logging import log_environment, setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.decode_gmm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acoustic-scale", default="0.1",
                        help="acoustic scale(s), space-separated (the inverse LM weight; tune on dev)")
    parser.add_argument("--beam", type=float, default=13.0)
    parser.add_argument("--max-active", type=int, default=7000)
    parser.add_argument("--graph-name", default="graph", help="graph folder inside <exp-dir> (graph, graph_nolm)")
    parser.add_argument("--out-prefix", default="decode_", help="decode folders: <exp-dir>/<out-prefix><set>")
    parser.add_argument("--overwrite", choices=("true", "false"), default="false")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("lang_dir")
    parser.add_argument("exp_dir")
    parser.add_argument("data_dirs", nargs="+")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.decode import DecodeOptions, decode_data_dir
    from asrkt.hmm.graph import ensure_graph

    exp = Path(args.exp_dir)
    graph = ensure_graph(args.lang_dir, exp, overwrite=args.overwrite == "true", name=args.graph_name)
    scales = [float(s) for s in args.acoustic_scale.split()]
    opts = DecodeOptions(acoustic_scale=scales[0], beam=args.beam, max_active=args.max_active)
    out = {}
    for d in args.data_dirs:
        out[d] = decode_data_dir(graph, exp, d, exp / f"{args.out_prefix}{Path(d).name}", opts, acoustic_scales=scales)
        for s, score in out[d].items():
            print(score.get("kaldi_line", f"{d}: no transcripts, hypotheses only"))
    return out


if __name__ == "__main__":
    main()
