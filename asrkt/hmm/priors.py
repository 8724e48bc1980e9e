"""Class priors of the hybrid objective: pdf counts from alignments -> log priors, for decoding a DNN's posteriors
as scaled likelihoods (``log p(x|s) ~ log p(s|x) - log p(s)``, Kaldi nnet1's ``--class-frame-counts``).

The counts file is Kaldi's ``ali_train_pdf.counts``: one text vector ``[ c0 c1 ... ]`` (what
``analyze-counts --binary=false`` writes). A pdf never seen in the alignments has no prior estimate; as in Kaldi
nnet1's PdfPrior, it gets a large log prior (``UNSEEN_LOG_PRIOR``), so that its scaled likelihood is very low and
the decoder avoids it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError, fail

UNSEEN_LOG_PRIOR = math.log(1e10)


def pdf_counts(pdf_seqs, num_pdfs: int) -> np.ndarray:
    """Frame counts per pdf (float64, length ``num_pdfs``) over an iterable of per-utterance pdf-id vectors."""
    counts = np.zeros(num_pdfs, dtype=np.float64)
    for seq in pdf_seqs:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) and (seq.min() < 0 or seq.max() >= num_pdfs):
            raise AsrktError(f"pdf id {int(seq.max() if seq.max() >= num_pdfs else seq.min())} outside "
                             f"[0, {num_pdfs})")
        counts += np.bincount(seq, minlength=num_pdfs)
    return counts


def log_priors(counts, floor: float = 1e-10) -> np.ndarray:
    """log(count / total); pdfs with a relative count below ``floor`` get ``UNSEEN_LOG_PRIOR``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise AsrktError("no frames in the pdf counts: cannot compute priors")
    p = counts / total
    out = np.full(len(p), UNSEEN_LOG_PRIOR)
    ok = p >= floor
    out[ok] = np.log(p[ok])
    return out


def write_counts(counts, path) -> Path:
    path = Path(path)
    path.write_text("[ " + " ".join(f"{c:g}" for c in np.asarray(counts)) + " ]\n")
    return path


def read_counts(path) -> np.ndarray:
    text = Path(path).read_text().split()
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        raise fail("expected a Kaldi text vector '[ c0 c1 ... ]' of pdf counts", path)
    try:
        return np.array([float(t) for t in text[1:-1]], dtype=np.float64)
    except ValueError:
        raise fail("a pdf count is not a number", path) from None
