"""asrkt: Kaldi-style speech recognition recipes for knowledge transfer."""
__version__ = "0.1.0"
