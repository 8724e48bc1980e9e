"""Kaldi CMVN stats, per speaker (with --spk2utt) or per utterance, as Kaldi's compute-cmvn-stats.

    python -m asrkt.bin.compute_cmvn_stats [--spk2utt data/train/spk2utt] <feats-rspecifier> <stats-wspecifier>

e.g. ``--spk2utt data/test/spk2utt scp:data/test/feats.scp ark,scp:fbank/cmvn_test.ark,data/test/cmvn.scp``.
(The feature stage, finish_features, already does this for a data dir; this tool is for other layouts.)
Every utterance of spk2utt must have features, and every speaker gets stats: unlike Kaldi, which warns
and skips, a gap is an error, so that no speaker is silently left unnormalised.
"""
from __future__ import annotations

import argparse
import logging

from asrkt.data.kaldi_dir import c_sorted, read_table
from asrkt.features.cmvn import SpeakerStats, compute_cmvn_stats
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt key must not pass as a prefix
    parser.add_argument("feats_rspecifier")
    parser.add_argument("stats_wspecifier")
    parser.add_argument("--spk2utt", default=None,
                        help="spk2utt file (or ark:FILE, Kaldi style): accumulate per speaker")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from asrkt.io import MatrixWriter, read_matrices

    stats: dict[str, object] = {}
    if args.spk2utt:
        path = args.spk2utt[4:] if args.spk2utt.startswith("ark:") else args.spk2utt
        spk2utt = read_table(path)
        utt2spk = {u: spk for spk, utts in spk2utt.items() for u in utts.split()}
        acc = SpeakerStats(utt2spk, source=path)
        seen = set()
        for utt, feats in read_matrices(args.feats_rspecifier):
            if utt in seen:
                raise fail("utterance appears twice", args.feats_rspecifier, utt)
            seen.add(utt)
            acc.add(utt, feats)
        missing = [u for u in c_sorted(utt2spk) if u not in seen]
        if missing:
            raise fail(f"{len(missing)} utterances of spk2utt have no features in {args.feats_rspecifier} "
                       f"(first: {missing[0]})", path)
        stats = acc.stats
    else:
        for utt, feats in read_matrices(args.feats_rspecifier):
            stats[utt] = compute_cmvn_stats([feats], source=f"{args.feats_rspecifier} ({utt})")
    if not stats:
        raise AsrktError(f"{args.feats_rspecifier}: no features read")
    with MatrixWriter(args.stats_wspecifier) as writer:
        for key in c_sorted(stats):
            writer.write(key, stats[key])
    logger.info("wrote CMVN stats for %d %s to %s", len(stats), "speakers" if args.spk2utt else "utterances",
                args.stats_wspecifier)


if __name__ == "__main__":
    main()
