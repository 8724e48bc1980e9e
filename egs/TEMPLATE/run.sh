#!/usr/bin/env bash
# Recipe for <corpus>: the shared knowledge-transfer pipeline (kt.sh; see ./kt.sh --help for its stages and
# options) with this corpus's settings. Options given here win over the values below, e.g.
#   ./run.sh --stage 3 --stop-stage 4
set -euo pipefail

corpus_dir=      # where the corpus lives (read by local/data.sh)
stage=0          # first stage to run (0 data, 1 features, 2 tokenizer, 3 teacher, 4 dump, 5 KT, 6 fine-tune, 7 decode)
stop_stage=100   # last stage to run
nj=4             # parallel jobs for data preparation, features and decoding
overwrite=false  # true: redo stages even when their .done markers say they are finished

. ./path.sh
. ./cmd.sh

# kt.sh parses the options (these defaults first, then the command line's, so that the latter win).
./kt.sh --corpus-dir "$corpus_dir" --stage "$stage" --stop-stage "$stop_stage" --nj "$nj" \
    --overwrite "$overwrite" "$@"
