#!/usr/bin/env bash
# CMU AN4 (real read speech, 0.7 h of training audio; see README.md). The stages and every option are those of
# the shared kt.sh: ./run.sh --help lists them with the values this corpus sets below. Options given on the
# command line win over these, e.g.
#   ./run.sh --corpus-dir /data/an4 --stop-stage 1
set -euo pipefail

opts=(
  --corpus-dir downloads/an4     # the unpacked AN4 corpus (etc/, wav/), as described in README.md
  --train-set train_nodev        # ESPnet's split: the training utterances but the first 100 sorted ones...
  --valid-set train_dev          # ...which are the dev set
  --test-sets "train_dev test"   # decoded in stage 7
  # Hybrid (GMM-HMM pdf targets, HCLG decoding) by default: on AN4's 0.7 h the CTC systems stay far behind
  # (RESULTS.md: the 100 % CTC teacher 42 % test WER against 13 %, and nothing leaves CTC's blank plateau at 25 %).
  --objective hybrid             # --objective ctc: characters, CTC, greedy and TLG decoding
  --lexicon data/local/lexicon.txt  # --objective hybrid: the corpus's etc/an4.dic, put there by stage 0
)
exec ./kt.sh "${opts[@]}" "$@"
