#!/usr/bin/env bash
# Data preparation for this corpus (stage 0 of kt.sh, run from the recipe folder): writes the Kaldi data dirs
# data/{train,dev,test} (wav.scp, text, utt2spk, spk2utt), e.g. with a python -m asrkt.bin.prepare_<corpus> tool.
set -euo pipefail

# shellcheck disable=SC2034  # read once the preparation is written
corpus_dir=  # where the corpus lives

help_message="Usage: $0 --corpus-dir <dir>"
. utils/log.sh
. utils/parse_options.sh

die "data preparation for this corpus is not written yet: edit local/data.sh (see egs/an4/local/data.sh)"
