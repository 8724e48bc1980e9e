#!/usr/bin/env bash
# CMU AN4 (real read speech, 0.7 h of training audio; see README.md). The stages are the shared ones of
# kt.sh (./kt.sh --help); options given here win over the values below, e.g.
#   ./run.sh --corpus-dir /data/an4 --stop-stage 1
set -euo pipefail

corpus_dir=downloads/an4   # the unpacked AN4 corpus (etc/, wav/), as described in README.md
stage=0          # first stage to run (0 data, 1 features, 2 tokenizer, 3 teacher, 4 dump, 5 KT, 6 fine-tune, 7 decode)
stop_stage=100   # last stage to run
nj=2             # parallel jobs for features and dumping
overwrite=false  # true: redo stages even when their .done markers say they are finished

. ./path.sh
. ./cmd.sh

# ESPnet's split: train_dev = the first 100 sorted training utterances, train_nodev the other 848.
./kt.sh --corpus-dir "$corpus_dir" --stage "$stage" --stop-stage "$stop_stage" --nj "$nj" \
    --overwrite "$overwrite" --train-set train_nodev --valid-set train_dev --test-sets "train_dev test" "$@"
