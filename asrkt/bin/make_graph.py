"""Make the HCLG graph of a GMM system (Kaldi's utils/mkgraph.sh) and tell its frame_ce targets dir where it is.

Usage: python -m asrkt.bin.make_graph [--overwrite true] [--targets-dir DIR] [--graph-name NAME] <lang-dir> <exp-dir>

<lang-dir> must hold G.fst (make_ngram_lm); <exp-dir> is a train_mono output. Writes <exp-dir>/graph/ (HCLG.fst,
words.txt, phones.txt, phones/; reused when present unless --overwrite true) and <targets-dir>/hybrid.yaml
(default <exp-dir>/targets), which the hybrid decoder of the frame_ce objective reads to find the graph and the
transition model (asrkt.hmm.decode.HybridDecoder). With --graph-name (e.g. graph_nolm, from the lang dir of
``make_ngram_lm --order 0``) the graph goes to <exp-dir>/<name>/ and hybrid.yaml is left as it is: decoders reach
such a graph with ``--graph <exp-dir>/<name>``.
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
    parser = argparse.ArgumentParser(prog="python -m asrkt.bin.make_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets-dir", default=None, help="the frame_ce targets dir (default <exp-dir>/targets)")
    parser.add_argument("--graph-name", default="graph",
                        help="the graph folder inside <exp-dir> (default graph: the one hybrid.yaml names)")
    parser.add_argument("--overwrite", choices=("true", "false"), default="false")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("lang_dir")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log_environment(logger)

    from asrkt.hmm.decode import write_hybrid_info
    from asrkt.hmm.graph import ensure_graph
    from asrkt.utils.errors import fail

    exp = Path(args.exp_dir)
    graph = ensure_graph(args.lang_dir, exp, overwrite=args.overwrite == "true", name=args.graph_name)
    if args.graph_name != "graph":
        return graph
    targets = Path(args.targets_dir) if args.targets_dir else exp / "targets"
    if not (targets / "num_pdfs").is_file():
        raise fail("missing: not a frame_ce targets dir (train_mono writes <exp-dir>/targets)", targets / "num_pdfs")
    info = write_hybrid_info(targets, exp, graph)
    logger.info("%s: graph %s, model %s", info, graph, exp)
    return graph


if __name__ == "__main__":
    main()
