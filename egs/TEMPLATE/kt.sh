#!/usr/bin/env bash
# The stage map shared by every asrkt recipe (the ESPnet asr.sh pattern): egs/<corpus>/run.sh sets the
# corpus's options and hands over to this script, reached there through the symlink kt.sh. One stage map
# for all corpora, written once, so a fix here reaches every recipe.
#
#   0 data prep and validation        local/data.sh -> data/{train,dev,test}
#   1 features and CMVN               data/<set>/{feats.scp,cmvn.scp}, fbank/
#   2 targets (tokenizer)             data/lang_<kind>
#   3 teacher DNN (CTC)               exp/teacher
#   4 dump teacher posteriors         exp/teacher/post_<set>/post.{JOB.ark,scp}, post_info.yaml
#   5 student KT pre-training         exp/student_kt       (soft targets only, temperature T)
#   6 fine-tuning and baselines       exp/student_kt_ft    (CTC from stage 5), exp/student_scratch,
#                                     exp/student_kt_reg   (alpha mix of soft and hard targets)
#   7 decode and score                exp/<system>/decode_<set>, results/, RESULTS.md
#
# Every stage leaves a .done marker and is skipped on rerun; --overwrite true redoes it.
set -euo pipefail

# ---------------------------------------------------------------- options (--name value)
stage=0                # first stage to run
stop_stage=100         # last stage to run
overwrite=false        # true: redo stages that already have a .done marker
nj=2                   # parallel jobs for features, posterior dumping and decoding
seed=1                 # global seed; each training run derives its own from it
corpus_dir=""          # where the corpus is, passed to local/data.sh (empty: its default)
data_opts=""           # extra options for local/data.sh, e.g. "--size tiny"
train_set=train        # training set under data/
valid_set=dev          # dev set: learning-rate schedule and model choice
test_sets="dev test"   # sets decoded in stage 7
fbank_config=conf/fbank.yaml   # feature extraction config
token_kind=char        # tokenizer: char | bpe | unigram
vocab_size=0           # vocabulary size for bpe/unigram
teacher_config=conf/teacher.yaml                # stage 3: DNN teacher
kt_config=conf/student_kt.yaml                  # stage 5: LSTM pre-trained on the teacher's soft targets
finetune_config=conf/finetune.yaml              # stage 6: KT student fine-tuned with CTC
scratch_config=conf/student_scratch.yaml        # stage 6: the same LSTM from scratch (empty: skip)
kt_reg_config=conf/student_kt_reg.yaml          # stage 6: KT as a regulariser, alpha mix (empty: skip)
parallel_baselines=true  # stage 6: train the fine-tuned student and the baselines at once, one CPU thread each
post_topk=0            # 0: dense log-probabilities; K > 0: top-K in Kaldi's Posterior format
train_args=""          # extra --key value overrides for every training run, e.g. "--schedule.max_epochs 2"
tag=""                 # suffix of the exp folder names, to keep variants apart (e.g. _seed2)

help_message="Usage: $0 [--stage N] [--stop-stage N] [--overwrite true] [--corpus-dir DIR] [options]
Runs the asrkt knowledge-transfer recipe. Every option above is settable as --name value; see the
comments at the top of $(readlink -f "$0")."

. ./path.sh
. ./cmd.sh
. utils/log.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "unexpected arguments: $*"; echo "$help_message" >&2; exit 1
fi

recipe_start=$(date +%s)
teacher=exp/teacher${tag}
lang=data/lang_${token_kind}$([ "$token_kind" = char ] || echo "${vocab_size}")
post_sets="$train_set $valid_set"
post_dir() { echo "$teacher/post_$1"; }

# train_system EXP CONFIG [extra train options]: one training run; resumes from its checkpoints,
# starts over with --overwrite true. Runs in the foreground so that its progress shows.
train_system() {
  local exp=$1 config=$2; shift 2
  if stage_is_done "$exp"; then return 0; fi
  if "$overwrite"; then rm -rf "$exp"; fi
  # shellcheck disable=SC2086
  python -m asrkt.bin.train --config "$config" --train-dir "data/$train_set" --valid-dir "data/$valid_set" \
    --lang-dir "$lang" --exp-dir "$exp" --seed "$seed" "$@" $train_args
  stage_mark_done "$exp"
}

# Systems of stage 6/7, and the stage-6 baselines that are switched off by an empty config.
systems="$teacher exp/student_kt_ft${tag}"
[ -n "$scratch_config" ] && systems="$systems exp/student_scratch${tag}"
[ -n "$kt_reg_config" ] && systems="$systems exp/student_kt_reg${tag}"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  stage_begin 0 "data preparation and validation: ${corpus_dir:-(default corpus location)} -> data/{$train_set,$valid_set,test}"
  if ! stage_is_done data; then
    # shellcheck disable=SC2086
    local/data.sh ${corpus_dir:+--corpus-dir "$corpus_dir"} $data_opts
    for x in $train_set $valid_set $test_sets; do
      python -m asrkt.bin.validate_data_dir --no-feats "data/$x"
    done
    stage_mark_done data
  fi
  stage_end
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  stage_begin 1 "fbank features and CMVN: data/<set>/wav.scp -> fbank/, data/<set>/{feats,cmvn}.scp"
  for x in $(echo "$train_set $valid_set $test_sets" | tr ' ' '\n' | sort -u); do
    stage_is_done "exp/make_fbank/$x" && continue
    utils/make_fbank.sh --nj "$nj" --cmd "$train_cmd" --fbank-config "$fbank_config" \
      "data/$x" "exp/make_fbank/$x" fbank
    stage_mark_done "exp/make_fbank/$x"
  done
  stage_end
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  stage_begin 2 "tokenizer ($token_kind) from the training text only: data/$train_set/text -> $lang"
  if ! stage_is_done "$lang"; then
    python -m asrkt.bin.prepare_lang --kind "$token_kind" --vocab-size "$vocab_size" "data/$train_set/text" "$lang"
    stage_mark_done "$lang"
  fi
  stage_end
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  stage_begin 3 "DNN teacher with CTC: data/$train_set, $lang -> $teacher"
  train_system "$teacher" "$teacher_config"
  stage_end
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  stage_begin 4 "dump teacher posteriors: $teacher/final.pt -> $teacher/post_{$train_set,$valid_set}"
  for x in $post_sets; do
    dir=$(post_dir "$x")
    stage_is_done "$dir" && continue
    python -m asrkt.bin.split_data_dir "data/$x" "$nj"
    $train_cmd JOB=1:"$nj" "$dir/log/dump.JOB.log" \
      python -m asrkt.bin.dump_posteriors --model "$teacher/final.pt" --data-dir "data/$x/split$nj/JOB" \
        --topk "$post_topk" --wspecifier "ark,scp:$dir/post.JOB.ark,$dir/post.JOB.scp"
    python -m asrkt.bin.finish_posteriors --data-dir "data/$x" --model "$teacher/final.pt" "$dir" "$nj"
    stage_mark_done "$dir"
  done
  stage_end
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  stage_begin 5 "LSTM student pre-trained on the teacher's soft targets: $(post_dir "$train_set") -> exp/student_kt${tag}"
  train_system "exp/student_kt${tag}" "$kt_config" \
    --train-post "$(post_dir "$train_set")" --valid-post "$(post_dir "$valid_set")"
  stage_end
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  stage_begin 6 "fine-tuning with CTC (exp/student_kt${tag} -> exp/student_kt_ft${tag}) and the baselines"
  runs=("exp/student_kt_ft${tag}|$finetune_config|--init-from exp/student_kt${tag}/final.pt")
  [ -n "$scratch_config" ] && runs+=("exp/student_scratch${tag}|$scratch_config|")
  [ -n "$kt_reg_config" ] && runs+=("exp/student_kt_reg${tag}|$kt_reg_config|--train-post $(post_dir "$train_set") --valid-post $(post_dir "$valid_set")")
  if "$parallel_baselines"; then
    # Independent runs, one thread each: on a few cores this beats running them one after the other.
    pids=()
    for r in "${runs[@]}"; do
      IFS='|' read -r exp config extra <<< "$r"
      if "$overwrite"; then rm -rf "$exp"; fi  # before its log opens: train_system would remove it under us
      mkdir -p "$exp/log"
      log "training $exp in the background; follow it in $exp/log/train.log"
      # shellcheck disable=SC2086
      train_system "$exp" "$config" $extra --num-threads 1 > "$exp/log/stage6.out" 2>&1 &
      pids+=($!)
    done
    failed=0
    for i in "${!pids[@]}"; do
      exp=${runs[$i]%%|*}
      if ! wait "${pids[$i]}"; then
        log "training $exp failed; the end of $exp/log/stage6.out:"; tail -n 20 "$exp/log/stage6.out" >&2
        failed=1
      fi
    done
    [ "$failed" -eq 0 ] || die "stage 6 failed"
  else
    for r in "${runs[@]}"; do
      IFS='|' read -r exp config extra <<< "$r"
      # shellcheck disable=SC2086
      train_system "$exp" "$config" $extra
    done
  fi
  stage_end
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  stage_begin 7 "decode and score: $systems on $test_sets -> exp/<system>/decode_<set>, RESULTS.md"
  for exp in $systems; do
    for x in $test_sets; do
      dir=$exp/decode_$x
      stage_is_done "$dir" && continue
      python -m asrkt.bin.decode --model "$exp/final.pt" --data-dir "data/$x" --lang-dir "$lang" --out-dir "$dir"
      grep -h '%WER' "$dir/wer.txt"
      stage_mark_done "$dir"
    done
    python -m asrkt.bin.record_result --recipe-dir . --system "$(basename "$exp")" --exp-dir "$exp" \
      --train-dir "data/$train_set" --seed "$seed"
  done
  python -m asrkt.bin.make_results --recipe-dir .
  python -m asrkt.bin.plot_curves $systems --out "exp/curves${tag}.png"
  utt=$(head -n 1 "data/$valid_set/utt2spk" | cut -d' ' -f1)
  python -m asrkt.bin.plot_posteriorgram --utt "$utt" --lang-dir "$lang" --data-dir "data/$valid_set" \
    --post-scps "$(post_dir "$valid_set")/post.scp" --models "exp/student_kt_ft${tag}/final.pt" \
    --labels "DNN teacher (dumped)" "LSTM student, KT + fine-tuning" --out "exp/posteriorgram${tag}.png"
  cat RESULTS.md
  stage_end
fi

log "Successfully finished [elapsed=$(( $(date +%s) - recipe_start ))s]"
