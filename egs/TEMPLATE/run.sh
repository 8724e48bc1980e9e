#!/usr/bin/env bash
# Recipe for <corpus>: the shared knowledge-transfer pipeline (kt.sh) with this corpus's settings. The stages
# and every option are those of kt.sh: ./run.sh --help lists them with the values set below. Set here only what
# differs from kt.sh's defaults, one option a line with its reason; options given on the command line win
# over these, e.g.
#   ./run.sh --stage 3 --stop-stage 4
set -euo pipefail

opts=(
  --corpus-dir ""                # where the corpus lives (read by local/data.sh)
  --test-sets "dev test"         # decoded in stage 7
  --token-kind char              # output units: char, or bpe/unigram with --vocab-size N
  --lexicon ""                   # --objective hybrid: pronunciation lexicon (WORD PH1 PH2 ...; WORD(2) alternates)
)
exec ./kt.sh "${opts[@]}" "$@"
