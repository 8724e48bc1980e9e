#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install asrkt with its dependencies.
# Usage: tools/setup_venv.sh [venv-dir] [python]
# Idempotent: the Makefile calls it only when setup.py changed since the last install.
set -euo pipefail
venv=${1:-.venv}
python=${2:-python3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "tools/setup_venv.sh: $python is missing or older than 3.10" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "tools/setup_venv.sh: creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch is pinned to the CPU build in setup.py; a bare "torch" would pull a multi-GB CUDA build.
"$venv/bin/python" -m pip install --quiet -e .
# The Kaldi wheels are imported in the only order that works (kaldi_hmm_gmm, kaldifst, kaldi_decoder, kaldilm;
# see asrkt/hmm/kaldi.py); a wrong order hangs, hence the timeout.
timeout 300 "$venv/bin/python" -c 'import kaldi_hmm_gmm, kaldifst, kaldi_decoder, kaldilm, asrkt, torch, kaldiio, lhotse, kaldi_native_io, kaldi_native_fbank, sentencepiece, jiwer, espeakng_loader; print("asrkt", asrkt.__version__, "with torch", torch.__version__, "installed in '"$venv"'")'
