#!/usr/bin/env bash
# Stage 0 data preparation of egs/an4: Kaldi data dirs from the CMU AN4 corpus (real read speech, 16 kHz),
# with ESPnet's ids and split: data/train_nodev (848 utts), data/train_dev (first 100), data/test (130).
# The logic is in asrkt/corpora/an4.py. Nothing is downloaded: unpack AN4 (the WAV version, with etc/ and
# wav/) at downloads/an4 or point --corpus-dir at it.
set -euo pipefail

corpus_dir=downloads/an4   # the unpacked AN4 corpus

help_message="Usage: $0 [--corpus-dir DIR]
Writes data/{train_nodev,train_dev,test} from the AN4 corpus at DIR (default: downloads/an4)."

. ./path.sh
. utils/log.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "unexpected arguments: $*"; echo "$help_message" >&2; exit 1
fi

log "AN4 from $corpus_dir -> data/{train_nodev,train_dev,test}"
python -m asrkt.bin.prepare_an4 --corpus-dir "$corpus_dir" --data-dir data
