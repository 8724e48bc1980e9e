"""Kaldi I/O, the one place it happens: matrices and vectors (kaldiio), Posteriors (kaldi_native_io), scp files.

Readers take Kaldi rspecifiers (``ark:f``, ``scp:f``, ``ark:-``, ``ark:cmd |``), writers wspecifiers
(``ark:f``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:| cmd``). Writers use temporary names renamed on success.
"""
from asrkt.io.ark import MatrixScp, MatrixWriter, load_scp, read_matrices, write_matrices
from asrkt.io.posterior import (PosteriorScp, PosteriorWriter, load_posterior_scp, posterior_to_topk,
                                read_posteriors, topk_to_posterior)
from asrkt.io.scp import merge_scp, read_scp, split_scp
from asrkt.io.specifiers import RSpecifier, WSpecifier, parse_rspecifier, parse_wspecifier

__all__ = [
    "parse_rspecifier", "parse_wspecifier", "RSpecifier", "WSpecifier",
    "read_matrices", "load_scp", "MatrixScp", "MatrixWriter", "write_matrices",
    "PosteriorWriter", "read_posteriors", "load_posterior_scp", "PosteriorScp",
    "topk_to_posterior", "posterior_to_topk",
    "read_scp", "merge_scp", "split_scp",
]
