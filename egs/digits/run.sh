#!/usr/bin/env bash
# Default recipe: connected digits synthesised with espeak-ng (no download), train/dev/test spoken by
# disjoint voices. The stages and every option are those of the shared kt.sh: ./run.sh --help lists them with
# the values this corpus sets below. Options given on the command line win over these, e.g.
#   ./run.sh --stage 3 --stop-stage 4
#   ./run.sh --data-opts "--size tiny"     # the small corpus the tests use
#   ./run.sh --objective hybrid            # GMM-HMM alignments, DNN/LSTM on pdfs, HCLG decoding with an LM
set -euo pipefail

opts=(
  --data-opts "--size default"   # local/data.sh: about 1.5 h of training audio, 10 min of dev and test
  --test-sets "dev test"         # decoded in stage 7; dev is also the valid set (kt.sh --valid-set dev)
  --token-kind bpe               # BPE over the digit words...
  --vocab-size 50                # ...with 50 units: most digit words are a single token
  --lexicon local/lexicon.txt    # --objective hybrid: CMUdict pronunciations of the digit words
)
exec ./kt.sh "${opts[@]}" "$@"
