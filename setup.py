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
    ],
    extras_require={"bench": ["liger-kernel"]},
)
