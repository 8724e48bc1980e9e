#!/usr/bin/env bash
# Stage 0 data preparation of egs/digits: synthesise connected-digit strings (ZERO..NINE, OH) with espeak-ng,
# many accents x voice variants, test and dev voices unheard in training; write data/{train,dev,test}.
# The logic is in asrkt/corpora/digits.py; rerunning with the same size and seed reuses the audio.
set -euo pipefail

size=default   # tiny: 40/10/10 utterances (tests, seconds); default: about 1.5 h train, 10 min dev and test
seed=1         # seed of the voice split and of every utterance's parameters (same seed: identical WAVs)
nj=2           # parallel synthesis processes (the audio does not depend on it)
corpus_dir=""  # where the audio goes; empty: downloads/digits_<size>_seed<seed> (git-ignored)

help_message="Usage: $0 [--size tiny|default] [--seed N] [--nj N] [--corpus-dir DIR]
Synthesises the digits corpus into downloads/digits_<size>_seed<seed>/ and writes data/{train,dev,test}."

. ./path.sh
. utils/log.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "unexpected arguments: $*"; echo "$help_message" >&2; exit 1
fi

audio_dir=${corpus_dir:-downloads/digits_${size}_seed${seed}}
log "digits corpus (size $size, seed $seed): $audio_dir -> data/{train,dev,test}"
python -m asrkt.bin.prepare_digits --size "$size" --seed "$seed" --nj "$nj" --audio-dir "$audio_dir" --data-dir data
