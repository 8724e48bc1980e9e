"""The hybrid (HMM) objective's foundations: lang dirs (lexicon, L.fst, topology) and n-gram LMs (ARPA, G.fst).

Everything that touches Kaldi's C++ goes through :mod:`asrkt.hmm.kaldi`, which imports the k2-fsa wheels in the
only order that works. This package's ``__init__`` imports none of them, so ``import asrkt.hmm`` stays cheap.
"""
