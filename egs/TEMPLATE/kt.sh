#!/usr/bin/env bash
# The stage map shared by every asrkt recipe (the ESPnet asr.sh pattern): egs/<corpus>/run.sh sets the
# corpus's options and hands over to this script, reached there through the symlink kt.sh. One stage map
# for all corpora, written once, so a fix here reaches every recipe.
#
#   0 data prep and validation        local/data.sh -> data/{train,dev,test}
#   1 features and CMVN               data/<set>/{feats.scp,cmvn.scp}, fbank/
#   2 targets (tokenizer)             data/lang_<kind><size>_<train set><tag> (refused if made from other text)
#   3 teacher DNN (CTC)               exp/teacher
#   4 teacher check, dump posteriors  exp/teacher/post_<set>/post.{JOB.ark,scp}, post_info.yaml
#   5 student KT pre-training         exp/student_kt       (soft targets only, temperature T)
#   6 fine-tuning and baselines       exp/student_kt_ft    (CTC from stage 5), exp/student_scratch,
#                                     exp/student_kt_reg   (alpha mix of soft and hard targets)
#   7 decode and score                exp/<system>/decode_<set>, exp/results/<system>.yaml, exp/RESULTS.md
#
# Other methods run next to these plain systems as named variants, each in an exp folder of its own and scored in
# stage 7 with a result record of its own: --teacher-variants "teacher_dbn:conf/teacher_dbn.yaml ..." (stage 3:
# exp/teacher_dbn; the students still learn from exp/teacher), --kt-variants "student_tli:conf/student_tli.yaml ..."
# (stage 5: exp/student_tli, on exp/teacher's posteriors; stage 6: fine-tuned with --finetune-config into
# exp/student_tli_ft) and --kt-reg-variants "student_kt_reg_T4:conf/student_kt_reg_T4.yaml ..." (stage 6, next to
# exp/student_kt_reg, e.g. at another temperature). A student config that names the teacher's checkpoint
# (loss.teacher_model: an on-the-fly teacher, e.g. PKT; init.from_model: e.g. TLI) gets this run's teacher
# instead, exp/teacher<tag>/final.pt: the path in the config is the one a training run by hand from the recipe dir
# uses.
# A DILS teacher (hook dils) also gets the dev WER of each depth's best model: exp/<name>/dils/depths.md.
#
# --objective hybrid (issue 13) keeps the stage map; stage 2 then makes the targets as Kaldi does for nnet1:
#   2 lang, LM, GMM, graph            data/lang_hmm_<train set><tag> (prepare_lang_hmm from --lexicon),
#                                     data/lang_hmm_<train set><tag>_<order>g (LM from the training text only,
#                                     G.fst), exp/hybrid/mono<tag> (monophone GMM-HMM, alignments of the train and
#                                     dev sets, targets/ with pdf.scp, pdf counts, hybrid.yaml), its graph/HCLG.fst,
#                                     and graph_nolm/ from data/lang_hmm_<train set><tag>_nolm (no LM: a uniform
#                                     loop over the training words)
# and stages 3-6 train the same systems with frame cross-entropy on the pdf targets (conf/hybrid/<name>.yaml
# replaces conf/<name>.yaml where it exists; --objective frame_ce in any case) under exp/hybrid/; stage 7 decodes
# them, and the GMM itself, on HCLG with the n-gram LM (decode_<set>) and without it (decode_nolm_<set>), each at
# the acoustic scale with the lowest dev WER among --acoustic-scales (tune_{lm,nolm}_<dev set>/best.yaml; the test
# sets are decoded once, at that scale). Their result records are named hybrid_<system> and
# hybrid_<system>_nolm, apart from the CTC ones. (CTC systems are scored by greedy search, decode_<set>, and
# through TLG with the LM of stage 2, decode_lm_<set> at the scale tuned in tune_lm_<dev set>: <system>_lm.)
#
# Every stage leaves a .done marker and is skipped on rerun; --overwrite true redoes it. Training runs
# through $train_cmd and decoding as $decode_cmd JOB=1:$nj (cmd.sh), so a Slurm cmd.sh sends both to the
# cluster. A run's results stay under exp/; --commit-results true makes them the recipe's reference results
# (results/*.yaml, RESULTS.md), which are committed.
set -euo pipefail

# ---------------------------------------------------------------- options (--name value)
stage=0                # first stage to run
stop_stage=100         # last stage to run
overwrite=false        # true: redo stages that already have a .done marker
nj=2                   # parallel jobs for features, posterior dumping and decoding (JOB=1:nj)
seed=1                 # global seed; each training run derives its own from it
corpus_dir=""          # where the corpus is, passed to local/data.sh (empty: its default)
data_opts=""           # extra options for local/data.sh, e.g. "--size tiny"
train_set=train        # training set under data/
train_fraction=1       # < 1: train on whole speakers covering this fraction of the training utterances
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
teacher_variants=""    # stage 3: more teachers "name:config ...", e.g. "teacher_dbn:conf/teacher_dbn.yaml": each
                       # trained into exp/<name> and scored in stage 7; the students still learn from exp/teacher
kt_variants=""         # stage 5: more KT students "name:config ...", e.g. "student_tli:conf/student_tli.yaml": each
                       # pre-trained as student_kt, fine-tuned in stage 6 into exp/<name>_ft, scored in stage 7
kt_reg_variants=""     # stage 6: more KT-regularised students "name:config ...", e.g.
                       # "student_kt_reg_T4:conf/student_kt_reg_T4.yaml": each trained as student_kt_reg (on
                       # exp/teacher's posteriors) into exp/<name>, scored in stage 7
parallel_baselines=true  # stage 6: train the fine-tuned student and the baselines at once, one CPU thread each
post_topk=0            # 0: dense log-probabilities; K > 0: top-K in Kaldi's Posterior format
train_args=""          # extra --key value overrides for every training run, e.g. "--schedule.max_epochs 2"
student_args=""        # more overrides for the LSTM students of stages 5-6 only (the teacher keeps its config), e.g.
                       # "--model.lstm.bidirectional true": KT student, fine-tuned, scratch, KT-regularised, variants
nproc=1                # processes per training run: N > 1 trains data-parallel (DDP through torchrun; the same
                       # global batch split between them), on the device the config says (gloo on CPU, NCCL on GPU)
ngpu=0                 # GPUs per training run: N > 0 means N processes (DDP), one GPU each (device cuda), and
                       # $train_cmd --gpu N, so that a Slurm cmd.sh allocates them; 0: as the config and cmd.sh say
teacher_check_args=""  # extra options of the stage-4 teacher check, e.g. "--max-error-rate 99"
tag=""                 # suffix of the exp and lang folder names, to keep variants apart (e.g. _seed2)
commit_results=false   # true: make this run's records the recipe's reference results (results/, RESULTS.md)
objective=ctc          # ctc (tokenizer, CTC) | hybrid (GMM-HMM alignments, frame CE on pdfs, HCLG decoding)
lexicon=""             # hybrid: pronunciation lexicon (WORD PH1 PH2 ...), set by run.sh
lm_order=3             # order of the Kneser-Ney n-gram LM estimated from the training text (stage 2; 0: no LM)
mono_args=""           # hybrid: extra options of asrkt.bin.train_mono, e.g. "--num-iters 20"
tri_args=""            # hybrid: non-empty adds a triphone GMM (tri1) whose alignments become the targets, e.g.
                       # "--num-leaves 200 --tot-gauss 1000" (options of asrkt.bin.train_tri)
decode_args=""         # extra options of asrkt.bin.decode in stage 7, e.g. "--beam 16" (hybrid)
acoustic_scales=""     # WFST decoding: stage 7 tries each on the dev set, keeps the best (empty: per objective)

help_message="Usage: $0 [--stage N] [--stop-stage N] [--overwrite true] [options]
Runs the asrkt knowledge-transfer recipe (the shared stage map $(readlink -f "$0")):
  0 data prep   1 features, CMVN   2 tokenizer   3 teacher DNN   4 teacher check, dump posteriors
  5 KT student pre-training   6 fine-tuning and baselines   7 decode, score, results under exp/"

. ./path.sh
. ./cmd.sh
. utils/log.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "unexpected arguments: $*"; echo "$help_message" >&2; exit 1
fi

check_stages "$stage" "$stop_stage" 7
[[ "$nproc" =~ ^[1-9][0-9]*$ && "$ngpu" =~ ^[0-9]+$ ]] \
  || die "--nproc must be an integer >= 1 and --ngpu one >= 0, got '$nproc' and '$ngpu'"
[ "$ngpu" -eq 0 ] || [ "$nproc" -eq 1 ] || [ "$nproc" -eq "$ngpu" ] \
  || die "--ngpu $ngpu starts one training process per GPU: leave --nproc out (got --nproc $nproc)"
recipe_start=$(date +%s)
# --train-fraction F: stages 0-1 make the whole training set, the stages after it train on a subset of whole
# speakers (data/<train set>_<P>pct, drawn with a fixed seed, so smaller fractions are subsets of larger ones);
# the dev and test sets stay whole. Its exp folders get _<P>pct in their tag.
full_train_set=$train_set
lang_tag=$tag  # data/lang* and LM names: the subset's name already tells them apart
pct=$(python -c "import sys; f = float(sys.argv[1]); assert 0 < f <= 1; print(round(100 * f))" "$train_fraction" \
  2> /dev/null) || die "--train-fraction must be a number in (0, 1], got '$train_fraction'"
if [ "$pct" != 100 ]; then
  train_set=${train_set}_${pct}pct
  tag=_${pct}pct${tag}
fi
case $objective in
  ctc)
    exp_root=exp
    # The lang dir is named after the training set and the tag, and prepare_lang refuses one made from other text.
    lang=data/lang_${token_kind}$([ "$token_kind" = char ] || echo "${vocab_size}")_${train_set}${lang_tag}
    lm_arpa=data/lm_${train_set}${lang_tag}_${lm_order}g.arpa  # n-gram LM of the training text (estimate_lm)
    tlg=${lang}_tlg_${lm_order}g                       # TLG: CTC topology, token lexicon, that LM (make_tlg)
    # Stage 7 scores greedy search (no LM, decode_<set>) and TLG with the LM (decode_lm_<set>, records <name>_lm).
    decode_variants="greedy lm"
    [ -n "$acoustic_scales" ] || acoustic_scales="0.5 0.7 1 1.4 2 2.8 4"  # CTC log-probs against the LM
    ;;
  hybrid)
    exp_root=exp/hybrid
    hmm_lang=data/lang_hmm_${train_set}${lang_tag}   # L.fst, phones, words, topology (prepare_lang_hmm)
    hmm_lang_test=${hmm_lang}_${lm_order}g      # the same plus lm.arpa and G.fst (make_ngram_lm)
    hmm_lang_nolm=${hmm_lang}_nolm              # the same with a uniform word loop as G: scoring without the LM
    mono=$exp_root/mono${tag}                   # monophone GMM-HMM, its alignments and graph/HCLG.fst
    gmm=$mono                                   # the GMM system whose alignments are the targets...
    [ -z "$tri_args" ] || gmm=$exp_root/tri1${tag}  # ...the triphones with --tri-args
    gmms=$mono$([ "$gmm" = "$mono" ] || echo " $gmm")  # decoded and scored in stage 7
    lang=$gmm/targets                           # what the DNNs train on and decode with (the frame_ce targets dir)
    [ -n "$lexicon" ] || die "--objective hybrid needs --lexicon (a pronunciation lexicon; run.sh sets it)"
    train_args="--objective frame_ce $train_args"
    # The gate's metric is then the frame error rate: predicting the most frequent pdf (silence) on every frame
    # gives about 82 % on digits; a teacher must do clearly better (a later --max-error-rate wins).
    teacher_check_args="--max-error-rate 75 $teacher_check_args"
    decode_args="--method hclg $decode_args"
    # Stage 7 scores HCLG with the LM (decode_<set>) and with the word loop (decode_nolm_<set>, <name>_nolm).
    decode_variants="lm nolm"
    # Kaldi's LM weights 3-15; lower scales (a wider search) cost minutes per set and were never the best on AN4.
    [ -n "$acoustic_scales" ] || acoustic_scales="0.067 0.083 0.1 0.125 0.15 0.2 0.25 0.3"
    # conf/hybrid/<name>.yaml (the CTC config included, objective and frame rate overridden) where it exists.
    hybrid_conf() { local h; h=$(dirname "$1")/hybrid/$(basename "$1"); if [ -f "$h" ]; then echo "$h"; else echo "$1"; fi; }
    teacher_config=$(hybrid_conf "$teacher_config"); kt_config=$(hybrid_conf "$kt_config")
    finetune_config=$(hybrid_conf "$finetune_config")
    [ -z "$scratch_config" ] || scratch_config=$(hybrid_conf "$scratch_config")
    [ -z "$kt_reg_config" ] || kt_reg_config=$(hybrid_conf "$kt_reg_config")
    ;;
  *) die "--objective must be ctc or hybrid, got '$objective'" ;;
esac
teacher=$exp_root/teacher${tag}
post_sets="$train_set $valid_set"
post_dir() { echo "$teacher/post_$1"; }

# train_system EXP CONFIG [extra train options]: one training run through $train_cmd (this machine or a
# cluster, as cmd.sh says); resumes from its checkpoints, starts over with --overwrite true. Its log is
# followed on the terminal, so that the progress shows wherever the job runs.
# set_aside EXP CONFIG [train options]: --overwrite true and EXP exists: the config must resolve first (a typo
# must not cost the old model), then EXP moves to EXP.old (replacing an older one): nothing is deleted until the
# next overwrite of the same system.
# config_sha1 EXP CONFIG [train options]: sha1 of the training config as it resolves with these options (the
# keys that change how a run executes, not what it trains, left out).
# train_config EXP CONFIG [train options]: that config, resolved (YAML); config_sha1_of: the sha1 of such a text.
train_config() {
  local exp=$1 config=$2; shift 2
  # shellcheck disable=SC2086
  python -m asrkt.bin.train --print-config --config "$config" --train-dir "data/$train_set" \
    --valid-dir "data/$valid_set" --lang-dir "$lang" --exp-dir "$exp" --seed "$seed" "$@" $train_args
}
config_sha1_of() {
  grep -Ev '^(num_threads|device|log_interval_s|keep_checkpoints):' | sha1sum | cut -d' ' -f1
}
config_sha1() {
  train_config "$@" | config_sha1_of
  [ "${PIPESTATUS[0]}" -eq 0 ]
}

set_aside() {
  local exp=$1 config=$2; shift 2
  if ! "$overwrite" || [ ! -e "$exp" ]; then return 0; fi
  config_sha1 "$exp" "$config" "$@" > /dev/null \
    || die "the config $config does not resolve (the error above): $exp is left as it was"
  rm -rf "$exp.old"
  mv "$exp" "$exp.old"
  log "--overwrite true: the previous $exp is kept as $exp.old until the next overwrite"
}

train_system() {
  local exp=$1 config=$2 job_log pid sha resolved threads procs launch=() ddp=(); shift 2
  resolved=$(train_config "$exp" "$config" "$@") \
    || die "the config $config does not resolve (the error above): $exp is left as it was"
  sha=$(printf '%s\n' "$resolved" | config_sha1_of)
  if [ -e "$exp/.done" ] && ! "$overwrite"; then
    # A finished system is reused only for the config it was trained with (.config_sha1; older runs lack it).
    if [ -f "$exp/.config_sha1" ] && [ "$(cat "$exp/.config_sha1")" != "$sha" ]; then
      die "$exp was trained with another config than $config (with these options) gives now: --overwrite true" \
        "retrains it (the old one is kept as $exp.old), or --tag keeps both"
    fi
    stage_is_done "$exp"; return 0  # (logs that it is done)
  fi
  set_aside "$exp" "$config" "$@"
  job_log=$exp/log/train_job.log
  mkdir -p "$exp/log"
  rm -f "$job_log"  # the launcher appends; the trainer keeps its own $exp/log/train.log across resumes
  # What the launcher allocates: CPUs for every process's torch threads, and the GPUs of --ngpu.
  procs=$(( ngpu > 0 ? ngpu : nproc ))
  threads=$(printf '%s\n' "$resolved" | sed -n 's/^num_threads: *//p')
  launch=(--num-threads "$(( procs * ${threads:-1} ))")
  [ "$ngpu" -gt 0 ] && launch+=(--gpu "$ngpu") && ddp+=(--device cuda)
  [ "$procs" -gt 1 ] && ddp+=(--nproc "$procs")
  log "training $exp (config $config$([ "$procs" -gt 1 ] && echo ", $procs processes (DDP)")); log: $job_log"
  # shellcheck disable=SC2086
  $train_cmd "${launch[@]}" "$job_log" python -m asrkt.bin.train --config "$config" --train-dir "data/$train_set" \
    --valid-dir "data/$valid_set" --lang-dir "$lang" --exp-dir "$exp" --seed "$seed" "$@" $train_args "${ddp[@]}" &
  pid=$!
  # A background job ignores Ctrl-C: pass it on (the launcher stops its jobs on SIGTERM).
  trap 'kill -TERM "$pid" 2> /dev/null; exit 130' INT TERM
  tail -n +1 -F --pid="$pid" "$job_log" 2> /dev/null || true
  wait "$pid" || die "training $exp failed (log: $job_log)"
  trap - INT TERM
  echo "$sha" > "$exp/.config_sha1"
  stage_mark_done "$exp"
}

# The table group of each system of stage 7 (a field of its result record; RESULTS.md groups by it).
system_group() {
  case $1 in
    "$teacher") echo teacher ;;
    "$exp_root/student_kt_ft${tag}") echo lstm_kt_finetune ;;
    "$exp_root/student_scratch${tag}") echo lstm_scratch ;;
    "$exp_root/student_kt_reg${tag}") echo lstm_kt_regularised ;;
    *) local v  # the variants sit next to the plain system of their kind
       for v in "${teacher_variant_runs[@]}"; do
         [ "$1" != "$exp_root/${v%%|*}${tag}" ] || { echo teacher; return; }
       done
       for v in "${kt_variant_runs[@]}"; do
         [ "$1" != "$exp_root/${v%%|*}_ft${tag}" ] || { echo lstm_kt_finetune; return; }
       done
       for v in "${kt_reg_variant_runs[@]}"; do
         [ "$1" != "$exp_root/${v%%|*}${tag}" ] || { echo lstm_kt_regularised; return; }
       done
       echo other ;;
  esac
}

# The name of a system's result record: its exp folder's name (hybrid_<name> for the hybrid objective), with
# _<variant> before the tag for a decode variant other than the objective's first (system_name EXP [VARIANT]).
system_name() {
  local name first=${decode_variants%% *}; name=$(basename "$1"); name=${name%"$tag"}
  echo "$([ "$objective" = ctc ] || echo hybrid_)${name}$([ "${2:-$first}" = "$first" ] || echo "_$2")${tag}"
}
# decode_setup VARIANT: the decode folders' prefix ($p) and the decoder's options ($extra) of a stage-7 variant.
decode_setup() {
  case $objective-$1 in
    ctc-greedy) p=""; extra=() ;;
    ctc-lm) p=lm_; extra=(--method tlg --graph "$tlg") ;;
    hybrid-lm) p=""; extra=(--graph "$gmm/graph") ;;
    hybrid-nolm) p=nolm_; extra=(--graph "$gmm/graph_nolm") ;;
  esac
}

# --teacher-variants / --kt-variants: "name:config ..." -> "name|config" entries (the conf/hybrid/ config where
# there is one); every name a folder and a record of its own, refused with one line before anything runs.
taken_names="teacher student_kt student_kt_ft student_scratch student_kt_reg mono tri1 results make_fbank hybrid"
add_variants() {  # add_variants OPTION ARRAY SPEC
  local -n out=$2
  local v name config n
  for v in $3; do
    name=${v%%:*}; config=${v#*:}
    [[ $v == *:* && $name =~ ^[A-Za-z][A-Za-z0-9_]*$ && -n $config ]] \
      || die "--$1: '$v' is not name:config (a name of letters, digits and _; e.g. teacher_dbn:conf/teacher_dbn.yaml)"
    [[ ! $name =~ _seed[0-9]+$ ]] || die "--$1: $name: a name ending in _seed<N> reads as a seed of another system"
    [ -f "$config" ] || die "--$1: $name: config file $config not found"
    for n in $name $([ "$1" != kt-variants ] || echo "${name}_ft"); do
      [[ " $taken_names " != *" $n "* ]] || die "--$1: $name: the name $n is taken (exp/$n is another system's)"
      taken_names="$taken_names $n"
    done
    [ "$objective" = ctc ] || config=$(hybrid_conf "$config")
    out+=("$name|$config")
  done
}
teacher_variant_runs=(); kt_variant_runs=(); kt_reg_variant_runs=()
add_variants teacher-variants teacher_variant_runs "$teacher_variants"
add_variants kt-variants kt_variant_runs "$kt_variants"
add_variants kt-reg-variants kt_reg_variant_runs "$kt_reg_variants"

# teacher_opts CONFIG: this run's teacher for the teacher checkpoint a student config names (loss.teacher_model,
# init.from_model; see the top), as --key value options, and nothing for a config that names none.
teacher_opts() {
  local keys key
  # shellcheck disable=SC2086
  keys=$(python -m asrkt.bin.train --print-config --config "$1" --train-dir "data/$train_set" \
    --valid-dir "data/$valid_set" --exp-dir "$exp_root" $train_args \
    | python -c 'import sys, yaml
c = yaml.safe_load(sys.stdin)
print(*[k for k in ("loss.teacher_model", "init.from_model") if c[k.split(".")[0]][k.split(".")[1]]])') \
    || die "the config $1 does not resolve (the error above)"
  for key in $keys; do
    log "$1: $key is this run's teacher, $teacher/final.pt"
    echo "--$key $teacher/final.pt"
  done
}

# Systems of stage 6/7, and the stage-6 baselines that are switched off by an empty config.
systems="$teacher $exp_root/student_kt_ft${tag}"
[ -n "$scratch_config" ] && systems="$systems $exp_root/student_scratch${tag}"
[ -n "$kt_reg_config" ] && systems="$systems $exp_root/student_kt_reg${tag}"
for v in "${teacher_variant_runs[@]}"; do systems="$systems $exp_root/${v%%|*}${tag}"; done
for v in "${kt_variant_runs[@]}"; do systems="$systems $exp_root/${v%%|*}_ft${tag}"; done
for v in "${kt_reg_variant_runs[@]}"; do systems="$systems $exp_root/${v%%|*}${tag}"; done
dups=$(for exp in $systems; do for v in $decode_variants; do system_name "$exp" "$v"; done; done | sort | uniq -d)
[ -z "$dups" ] || die "--teacher-variants/--kt-variants/--kt-reg-variants: two systems would write the result record" $dups": rename one"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  stage_begin 0 "data preparation and validation: ${corpus_dir:-(default corpus location)} -> data/{$full_train_set,$valid_set,test}"
  if ! stage_is_done data; then
    # shellcheck disable=SC2086
    local/data.sh ${corpus_dir:+--corpus-dir "$corpus_dir"} $data_opts
    for x in $full_train_set $valid_set $test_sets; do
      python -m asrkt.bin.validate_data_dir --no-feats "data/$x"
    done
    stage_mark_done data
  fi
  stage_end
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  stage_begin 1 "fbank features and CMVN: data/<set>/wav.scp -> fbank/, data/<set>/{feats,cmvn}.scp"
  for x in $(echo "$full_train_set $valid_set $test_sets" | tr ' ' '\n' | sort -u); do
    stage_is_done "exp/make_fbank/$x" && continue
    utils/make_fbank.sh --nj "$nj" --cmd "$train_cmd" --fbank-config "$fbank_config" \
      "data/$x" "exp/make_fbank/$x" fbank
    stage_mark_done "exp/make_fbank/$x"
  done
  stage_end
fi

if [ "$train_set" != "$full_train_set" ] && [ $stop_stage -ge 2 ] && ! stage_is_done "data/$train_set"; then
  log "training on ${pct} % of data/$full_train_set (whole speakers): data/$train_set"
  python -m asrkt.bin.subset_data_dir --fraction "$train_fraction" --seed 1 "data/$full_train_set" "data/$train_set"
  stage_mark_done "data/$train_set"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$objective" = hybrid ]; then
  stage_begin 2 "lang, LM, GMM-HMM, alignments, HCLG: $lexicon, data/{$train_set,$valid_set} -> $hmm_lang, $hmm_lang_test, $gmms"
  # Each tool reuses a finished output made from the same inputs and refuses one made from others.
  # shellcheck disable=SC2046
  python -m asrkt.bin.prepare_lang_hmm --overwrite "$overwrite" \
    $(for x in $(echo "$train_set $valid_set $test_sets" | tr ' ' '\n' | sort -u); do echo "--text data/$x/text"; done) \
    "$lexicon" "$hmm_lang"
  python -m asrkt.bin.make_ngram_lm --overwrite "$overwrite" --order "$lm_order" --text "data/$train_set/text" \
    "$hmm_lang" "$hmm_lang_test"
  python -m asrkt.bin.make_ngram_lm --overwrite "$overwrite" --order 0 --text "data/$train_set/text" \
    "$hmm_lang" "$hmm_lang_nolm"
  if ! stage_is_done "$mono"; then
    mkdir -p "$mono/log"
    log "training the monophone GMM-HMM $mono; log: $mono/log/train_mono.log"
    # shellcheck disable=SC2086
    $train_cmd "$mono/log/train_mono.log" python -m asrkt.bin.train_mono --overwrite "$overwrite" --nj "$nj" \
      --align-data "data/$valid_set" $mono_args "data/$train_set" "$hmm_lang" "$mono" \
      || { tail -n 20 "$mono/log/train_mono.log" >&2; die "train_mono failed (log: $mono/log/train_mono.log)"; }
    python -m asrkt.bin.make_graph --overwrite "$overwrite" "$hmm_lang_test" "$mono"
    stage_mark_done "$mono"
  fi
  if [ "$gmm" != "$mono" ] && ! stage_is_done "$gmm"; then
    mkdir -p "$gmm/log"
    log "training the triphone GMM-HMM $gmm from $mono's alignments; log: $gmm/log/train_tri.log"
    # shellcheck disable=SC2086
    $train_cmd "$gmm/log/train_tri.log" python -m asrkt.bin.train_tri --overwrite "$overwrite" --nj "$nj" \
      --align-data "data/$valid_set" $tri_args "data/$train_set" "$hmm_lang" "$mono" "$gmm" \
      || { tail -n 20 "$gmm/log/train_tri.log" >&2; die "train_tri failed (log: $gmm/log/train_tri.log)"; }
    python -m asrkt.bin.make_graph --overwrite "$overwrite" "$hmm_lang_test" "$gmm"
    stage_mark_done "$gmm"
  fi
  for g in $gmms; do python -m asrkt.bin.make_graph --graph-name graph_nolm "$hmm_lang_nolm" "$g"; done  # (reused)
  stage_end
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ "$objective" = ctc ]; then
  stage_begin 2 "tokenizer ($token_kind) from the training text only: data/$train_set/text -> $lang"
  if stage_is_done "$lang"; then  # made from this very training text? (refused otherwise)
    python -m asrkt.bin.prepare_lang --check --kind "$token_kind" --vocab-size "$vocab_size" \
      "data/$train_set/text" "$lang"
  else
    python -m asrkt.bin.prepare_lang --kind "$token_kind" --vocab-size "$vocab_size" --overwrite "$overwrite" \
      "data/$train_set/text" "$lang"
    stage_mark_done "$lang"
  fi
  # The LM for stage 7's TLG decoding, from the training text only (both reused when made from the same inputs).
  if [ ! -s "$lm_arpa" ] || "$overwrite"; then
    python -m asrkt.bin.estimate_lm --order "$lm_order" "data/$train_set/text" "$lm_arpa"
  fi
  python -m asrkt.bin.make_tlg --overwrite "$overwrite" "$lang" "$lm_arpa" "data/$train_set/text" "$tlg"
  stage_end
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  stage_begin 3 "DNN teacher ($objective): data/$train_set, $lang -> $teacher"
  train_system "$teacher" "$teacher_config"
  for v in "${teacher_variant_runs[@]}"; do  # --teacher-variants: trained and scored, not learnt from
    train_system "$exp_root/${v%%|*}${tag}" "${v#*|}"
  done
  stage_end
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  stage_begin 4 "teacher check, dump teacher posteriors: $teacher/final.pt -> $teacher/post_{$train_set,$valid_set}"
  # A degenerate teacher (blanks only, dev TER near 100 %) stops the recipe here, not after the students. The
  # check runs the teacher over the whole dev set: a job like a decode ($decode_cmd), not work for the head node.
  check_log=$teacher/log/check_teacher.log
  # shellcheck disable=SC2086
  $decode_cmd "$check_log" python -m asrkt.bin.check_teacher --model "$teacher/final.pt" \
    --data-dir "data/$valid_set" --lang-dir "$lang" $teacher_check_args \
    || { grep -h 'ERROR' "$check_log" >&2 || tail -n 20 "$check_log" >&2; die "the teacher check failed (log: $check_log)"; }
  grep -h 'fit to teach' "$check_log" | sed 's/^.*INFO: //' || true
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
  stage_begin 5 "LSTM student pre-trained on the teacher's soft targets: $(post_dir "$train_set") -> $exp_root/student_kt${tag}"
  for v in "student_kt|$kt_config" "${kt_variant_runs[@]}"; do  # the plain student, then --kt-variants
    opts=$(teacher_opts "${v#*|}")
    # shellcheck disable=SC2086
    train_system "$exp_root/${v%%|*}${tag}" "${v#*|}" $opts $student_args \
      --train-post "$(post_dir "$train_set")" --valid-post "$(post_dir "$valid_set")"
  done
  stage_end
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  stage_begin 6 "fine-tuning ($objective) ($exp_root/student_kt${tag} -> $exp_root/student_kt_ft${tag}) and the baselines"
  runs=()
  for v in student_kt "${kt_variant_runs[@]%%|*}"; do  # each KT student fine-tuned, --kt-variants too
    runs+=("$exp_root/${v}_ft${tag}|$finetune_config|--init-from $exp_root/${v}${tag}/final.pt $student_args")
  done
  if [ -n "$scratch_config" ]; then
    opts=$(teacher_opts "$scratch_config"); runs+=("$exp_root/student_scratch${tag}|$scratch_config|$opts $student_args")
  fi
  for v in $([ -z "$kt_reg_config" ] || echo "student_kt_reg|$kt_reg_config") "${kt_reg_variant_runs[@]}"; do
    opts=$(teacher_opts "${v#*|}")  # the plain KT-regularised student (unless switched off), --kt-reg-variants
    opts="$opts $student_args --train-post $(post_dir "$train_set") --valid-post $(post_dir "$valid_set")"
    runs+=("$exp_root/${v%%|*}${tag}|${v#*|}|$opts")
  done
  if "$parallel_baselines"; then
    # Independent runs, one thread each: on a few cores this beats running them one after the other.
    pids=()
    for r in "${runs[@]}"; do
      IFS='|' read -r exp config extra <<< "$r"
      set_aside "$exp" "$config" $extra  # before its log opens: train_system would move it under us
      mkdir -p "$exp/log"
      log "training $exp in the background; follow it in $exp/log/train_job.log"
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
  stage_begin 7 "decode and score: $systems on $test_sets -> exp/<system>/decode_<set>, exp/results, exp/RESULTS.md"
  for x in $test_sets; do python -m asrkt.bin.split_data_dir "data/$x" "$nj" > /dev/null; done
  if [ "$objective" = hybrid ]; then
    # The GMM's own decodes (graphs made in stage 2, reused), with and without the LM, at the dev set's best
    # acoustic scale, and their result records.
    for g in $gmms; do  # the monophones, and the triphones when they made the targets
      for lm in lm nolm; do
        p=$([ $lm = lm ] || echo nolm_); graph=graph$([ $lm = lm ] || echo _nolm)
        lm_dir=$([ $lm = lm ] && echo "$hmm_lang_test" || echo "$hmm_lang_nolm")
        if ! stage_is_done "$g/tune_${p:-lm_}$valid_set"; then
          $decode_cmd "$g/log/tune_${p}gmm.log" python -m asrkt.bin.decode_gmm --graph-name $graph \
            --out-prefix "tune_${p:-lm_}" --acoustic-scale "$acoustic_scales" "$lm_dir" "$g" "data/$valid_set" \
            || { tail -n 20 "$g/log/tune_${p}gmm.log" >&2; die "decode_gmm failed (log: $g/log/tune_${p}gmm.log)"; }
          stage_mark_done "$g/tune_${p:-lm_}$valid_set"
        fi
        scale=$(python -m asrkt.bin.pick_scale "$g/tune_${p:-lm_}$valid_set")
        if ! stage_is_done "$g/log/decode_${p}gmm"; then
          # shellcheck disable=SC2046
          $decode_cmd "$g/log/decode_${p}gmm.log" python -m asrkt.bin.decode_gmm --graph-name $graph \
            --out-prefix "decode_${p}" --acoustic-scale "$scale" "$lm_dir" "$g" $(for x in $test_sets; do echo "data/$x"; done) \
            || { tail -n 20 "$g/log/decode_${p}gmm.log" >&2; die "decode_gmm failed (log: $g/log/decode_${p}gmm.log)"; }
          grep '%WER' "$g/log/decode_${p}gmm.log" || true
          mkdir -p "$g/log/decode_${p}gmm" && stage_mark_done "$g/log/decode_${p}gmm"
        fi
        python -m asrkt.bin.record_result --recipe-dir . --system "$(system_name "$g" $lm)" --exp-dir "$g" \
          --group other --train-dir "data/$train_set" --seed "$seed" --decode-prefix "decode_${p}"
      done
    done
  fi
  for exp in $systems; do
    for variant in $decode_variants; do
      decode_setup "$variant"
      if [ "$variant" != greedy ]; then
        # WFST search: the dev set at every acoustic scale (the model runs once), then every set at the best one.
        tune=$exp/tune_${p:-lm_}$valid_set
        if ! stage_is_done "$tune"; then
          # shellcheck disable=SC2086
          $decode_cmd "$tune/log/tune.log" python -m asrkt.bin.decode --model "$exp/final.pt" \
            --data-dir "data/$valid_set" --lang-dir "$lang" --out-dir "$tune" --num-threads 1 $decode_args \
            "${extra[@]}" --acoustic-scales "$acoustic_scales"
          stage_mark_done "$tune"
        fi
        extra+=(--acoustic-scale "$(python -m asrkt.bin.pick_scale "$tune")")
      fi
      for x in $test_sets; do
        dir=$exp/decode_${p}$x
        stage_is_done "$dir" && continue
        rm -rf "$dir/split$nj"
        # shellcheck disable=SC2086
        $decode_cmd JOB=1:"$nj" "$dir/log/decode.JOB.log" \
          python -m asrkt.bin.decode --model "$exp/final.pt" --data-dir "data/$x/split$nj/JOB" --lang-dir "$lang" \
            --out-dir "$dir/split$nj/JOB" --no-score --num-threads 1 $decode_args "${extra[@]}"
        python -m asrkt.bin.score --decode-dir "$dir" --data-dir "data/$x" --nj "$nj" | grep '%WER'
        stage_mark_done "$dir"
      done
      python -m asrkt.bin.record_result --recipe-dir . --system "$(system_name "$exp" "$variant")" --exp-dir "$exp" \
        --group "$(system_group "$exp")" --train-dir "data/$train_set" --seed "$seed" --decode-prefix "decode_${p}"
    done
    # A DILS system (hook dils) kept the best model of each depth: each decoded on the dev set as the objective's
    # first variant (at the system's own tuned scale), for the dev WER per depth in $exp/dils/depths.md.
    if compgen -G "$exp/dils/depth_*.pt" > /dev/null; then
      variant=${decode_variants%% *}; decode_setup "$variant"
      [ "$variant" = greedy ] || extra+=(--acoustic-scale "$(python -m asrkt.bin.pick_scale "$exp/tune_${p:-lm_}$valid_set")")
      for model in "$exp"/dils/depth_*.pt; do
        dir=$exp/dils/decode_${p}${valid_set}_$(basename "$model" .pt)
        stage_is_done "$dir" && continue
        # shellcheck disable=SC2086
        $decode_cmd "$dir/log/decode.log" python -m asrkt.bin.decode --model "$model" --data-dir "data/$valid_set" \
          --lang-dir "$lang" --out-dir "$dir" --num-threads 1 $decode_args "${extra[@]}"
        stage_mark_done "$dir"
      done
      python -m asrkt.bin.dils_depths "$exp" --decode-dirs "$exp/dils/decode_${p}${valid_set}_depth_{depth}"
    fi
  done
  # This run's table (exp/RESULTS.md), printed next to the recipe's committed reference results.
  python -m asrkt.bin.make_results --recipe-dir . --dev-set "$valid_set" --test-sets "$test_sets"
  if "$commit_results"; then
    # shellcheck disable=SC2046
    python -m asrkt.bin.make_results --recipe-dir . --dev-set "$valid_set" --test-sets "$test_sets" \
      --promote $(for exp in $systems $([ "$objective" = ctc ] || echo "$gmms"); do
                    for variant in $decode_variants; do system_name "$exp" "$variant"; done; done)
    log "results/ and RESULTS.md now hold this run's records: review and commit them"
  fi
  python -m asrkt.bin.plot_curves $systems --out "$exp_root/curves${tag}.png"
  if [ "$objective" = ctc ]; then  # (its classes are labelled from the tokenizer's tokens.txt)
    utt=$(head -n 1 "data/$valid_set/utt2spk" | cut -d' ' -f1)
    python -m asrkt.bin.plot_posteriorgram --utt "$utt" --lang-dir "$lang" --data-dir "data/$valid_set" \
      --post-scps "$(post_dir "$valid_set")/post.scp" --models "exp/student_kt_ft${tag}/final.pt" \
      --labels "DNN teacher (dumped)" "LSTM student, KT + fine-tuning" --out "exp/posteriorgram${tag}.png"
  fi
  stage_end
fi

log "Successfully finished [elapsed=$(( $(date +%s) - recipe_start ))s]"
