"""Kaldi I/O, the one place it happens, on one stack: kaldi-native-io for matrices, vectors, int32 vectors and
Posteriors (:mod:`asrkt.io.kaldi` adds pipes, temporary names and one-line errors), plus scp files.

Readers take Kaldi rspecifiers (``ark:f``, ``scp:f``, ``ark:-``, ``ark:cmd |``), writers wspecifiers
(``ark:f``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:| cmd``). Writers use temporary names renamed on success,
and the scp files they write name archives by absolute paths. kaldiio is not used.
"""
from asrkt.io.ark import (IntVectorWriter, MatrixScp, MatrixWriter, load_int_vector_scp, load_scp, read_int_vectors,
                          read_matrices, read_vectors, write_int_vectors, write_matrices)
from asrkt.io.posterior import (PosteriorScp, PosteriorWriter, load_posterior_scp, posterior_to_topk,
                                read_posteriors, topk_to_posterior)
from asrkt.io.scp import merge_scp, read_scp, split_scp
from asrkt.io.specifiers import RSpecifier, WSpecifier, parse_rspecifier, parse_wspecifier

__all__ = [
    "parse_rspecifier", "parse_wspecifier", "RSpecifier", "WSpecifier",
    "read_matrices", "read_vectors", "load_scp", "MatrixScp", "MatrixWriter", "write_matrices",
    "read_int_vectors", "load_int_vector_scp", "IntVectorWriter", "write_int_vectors",
    "PosteriorWriter", "read_posteriors", "load_posterior_scp", "PosteriorScp",
    "topk_to_posterior", "posterior_to_topk",
    "read_scp", "merge_scp", "split_scp",
]
