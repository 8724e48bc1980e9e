"""The one place that imports Kaldi's C++ through the k2-fsa wheels; every other module imports from here.

Two facts measured on this project's machines (issue 13), which is why this module exists:

* Versions are pinned in setup.py: kaldi-hmm-gmm 1.1.4 was built against an older OpenFst than kaldifst 1.8.x,
  and with kaldifst 1.8 every kaldi-hmm-gmm call that takes an FST fails with ``TypeError: incompatible
  constructor arguments``. The working set is kaldi-hmm-gmm==1.1.4, kaldifst==1.7.17, kaldi-decoder==0.2.11,
  kaldilm==1.15.5.
* Import order matters: kaldi_hmm_gmm first, then kaldifst, then kaldi_decoder, kaldilm last. Other orders hang
  at import.

Usage: ``from asrkt.hmm.kaldi import kaldifst, khg`` (``khg`` is kaldi_hmm_gmm).
"""
from __future__ import annotations

# isort: off -- the order below is load-bearing (see the module docstring)
import kaldi_hmm_gmm  # noqa: E402  (1st)
import kaldifst  # noqa: E402  (2nd)
import kaldi_decoder  # noqa: E402  (3rd)
import kaldilm  # noqa: E402  (4th)
# isort: on

khg = kaldi_hmm_gmm

__all__ = ["kaldi_hmm_gmm", "khg", "kaldifst", "kaldi_decoder", "kaldilm"]
