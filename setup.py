"""asrkt: Kaldi-style recipes for knowledge transfer in speech recognition."""
from setuptools import find_packages, setup

setup(
    name="asrkt",
    version="0.1.0",
    description="Kaldi-style ASR recipes for knowledge transfer (dark knowledge, PKT, DILS, TLI)",
    packages=find_packages(include=["asrkt", "asrkt.*"]),
    python_requires=">=3.10",
    install_requires=[
        # CPU build on this machine's disk; a bare "torch" would pull a multi-GB CUDA build.
        "torch==2.13.0",
        "kaldiio",
        "lhotse",
        "urllib3",  # lhotse 1.33 fails to import without it
        "numpy",
        "scipy",  # resample_poly for rate conversion
        "sentencepiece",
        "jiwer",
        "pytest",
        "kaldi-native-io",
        "kaldi-native-fbank",
        "soundfile",
        "PyYAML",
        "tqdm",
        "matplotlib",
        "espeakng-loader",
        "triton",
        # Kaldi's C++ for the hybrid (HMM) objective, through the k2-fsa wheels (asrkt/hmm/kaldi.py). Pinned as a
        # set: kaldi-hmm-gmm 1.1.4 was built against an older OpenFst than kaldifst 1.8.x, and with kaldifst 1.8
        # every kaldi-hmm-gmm call taking an FST fails with TypeError. Import them only through asrkt.hmm.kaldi
        # (kaldi_hmm_gmm, kaldifst, kaldi_decoder, kaldilm in that order; other orders hang at import).
        "kaldi-hmm-gmm==1.1.4",
        "kaldifst==1.7.17",
        "kaldi-decoder==0.2.11",
        "kaldilm==1.15.5",
    ],
    extras_require={"bench": ["liger-kernel"]},
)
