#!/usr/bin/env bash
# Default recipe: connected digits synthesised with espeak-ng (no download), train/dev/test spoken by
# disjoint voices. The stages are the shared ones of kt.sh (./kt.sh --help); options given here win
# over the values below, e.g. ./run.sh --stage 3 --stop-stage 4, or ./run.sh --data-opts "--size tiny"
# for the small corpus the tests use. BPE with 50 units makes most digit words a single token.
set -euo pipefail

stage=0          # first stage to run (0 data, 1 features, 2 tokenizer, 3 teacher, 4 dump, 5 KT, 6 fine-tune, 7 decode)
stop_stage=100   # last stage to run
nj=2             # parallel jobs for synthesis, features and dumping
overwrite=false  # true: redo stages even when their .done markers say they are finished

. ./path.sh
. ./cmd.sh

# kt.sh parses the options: these defaults first, then the command line's, so that the latter win.
./kt.sh --stage "$stage" --stop-stage "$stop_stage" --nj "$nj" --overwrite "$overwrite" \
    --data-opts "--size default --nj $nj" --test-sets "dev test" \
    --token-kind bpe --vocab-size 50 "$@"
