#!/usr/bin/env bash
# utils/make_fbank.sh: Kaldi-compatible fbank features and per-speaker CMVN stats for a data dir, as Kaldi's
# steps/make_fbank.sh + steps/compute_cmvn_stats.sh in one step. The work is done by Python tools:
#   1. python -m asrkt.bin.split_data_dir <data-dir> <nj>          -> <data-dir>/split<nj>/{1..nj}
#   2. $cmd JOB=1:nj ... python -m asrkt.bin.compute_fbank        -> <fbank-dir>/raw_fbank_<name>.JOB.{ark,scp}
#   3. python -m asrkt.bin.finish_features                         -> <data-dir>/{feats.scp,utt2num_frames,
#      cmvn.scp,feats_info.yaml}, <fbank-dir>/cmvn_<name>.ark, then validates the data dir
# feats.scp and cmvn.scp hold absolute ark paths, so the data dir can be moved. Each run writes arks of its own
# (raw_fbank_<name>.<run>.JOB.ark, cmvn_<name>.<run>.ark); the previous run's arks are removed only once this run
# has succeeded. Any failure stops the script (the launcher prints the tail of the failed job's log), removes this
# run's arks and puts the previous feature tables back, still pointing at their arks.

# Begin configuration section.
nj=4             # number of parallel compute_fbank jobs
cmd=             # job launcher (run.pl semantics: $cmd JOB=1:N log cmd...); empty: utils/run_local.py
fbank_config=    # YAML fbank config (asrkt.features.fbank.FbankConfig keys); empty: the defaults
# End configuration section.

help_message="Usage: $0 [options] <data-dir> [<log-dir> [<fbank-dir>]]
 e.g.: $0 --nj 4 --fbank-config conf/fbank.yaml data/train exp/make_fbank/train fbank
 <log-dir> defaults to <data-dir>/log, <fbank-dir> to <data-dir>/data (as Kaldi).
Options:
  --nj <n>                  # number of parallel jobs (default $nj)
  --cmd <launcher>          # how to run jobs, e.g. \"\$train_cmd\" (default utils/run_local.py)
  --fbank-config <file>     # YAML fbank config (default: built-in defaults)"

echo "$0 $*"
utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$utils_dir/parse_options.sh" || exit 1
. "$utils_dir/log.sh" || exit 1

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
set -euo pipefail

data=$1
name=$(basename "$data")
logdir=${2:-$data/log}
fbankdir=${3:-$data/data}
[ -n "$cmd" ] || cmd="$utils_dir/run_local.py"

for f in "$data/wav.scp" "$data/utt2spk"; do
  [ -f "$f" ] || die "no such file $f"
done
config_opts=()
if [ -n "$fbank_config" ]; then
  [ -f "$fbank_config" ] || die "--fbank-config $fbank_config: no such file"
  config_opts=(--config "$fbank_config")
fi

mkdir -p "$logdir" "$fbankdir"
fbankdir=$(cd "$fbankdir" && pwd)   # absolute: the ark paths in feats.scp must not depend on the cwd

start=$SECONDS
run=$name.$(date +%Y%m%d%H%M%S).$$  # this run's ark names
tables="feats_info.yaml feats.scp cmvn.scp utt2num_frames"
log "fbank for $data: $nj jobs, arks in $fbankdir, logs in $logdir/make_fbank_$name.*.log"
# Set the old feature tables aside (as Kaldi does) while this run works; their arks are kept until it succeeds.
rm -rf "$data/.backup"
if [ -f "$data/feats.scp" ] || [ -f "$data/feats_info.yaml" ]; then
  mkdir -p "$data/.backup"
  for f in $tables; do
    if [ -f "$data/$f" ]; then mv -f "$data/$f" "$data/.backup/$f"; fi
  done
  log "moved the old feature tables of $data to $data/.backup until this run succeeds"
fi
succeeded=false
on_exit() {
  "$succeeded" && return
  rm -f "$fbankdir/raw_fbank_$run".* "$fbankdir/cmvn_$run.ark"
  if [ -d "$data/.backup" ]; then
    for f in $tables; do
      rm -f "$data/$f"
      if [ -f "$data/.backup/$f" ]; then mv -f "$data/.backup/$f" "$data/$f"; fi
    done
    rmdir "$data/.backup" 2> /dev/null || true
    log "$data: the previous feature tables are back (their arks were kept)"
  fi
}
trap on_exit EXIT
python -m asrkt.bin.split_data_dir "$data" "$nj" >/dev/null  # it prints the job dirs

# On failure the launcher prints the tail of the first failed job's log.
$cmd JOB=1:"$nj" "$logdir/make_fbank_$name.JOB.log" \
  python -m asrkt.bin.compute_fbank "${config_opts[@]}" "$data/split$nj/JOB" \
  "ark,scp:$fbankdir/raw_fbank_$run.JOB.ark,$fbankdir/raw_fbank_$run.JOB.scp" ||
  die "computing fbank for $data failed (logs: $logdir/make_fbank_$name.*.log)"

# A job that resampled audio says so once in its log; surface it here, where the user looks.
if grep -qh "were resampled" "$logdir/make_fbank_$name".*.log; then
  log "WARNING: $data: audio at another rate than the fbank config's was resampled (from the job logs):"
  grep -h "were resampled" "$logdir/make_fbank_$name".*.log | sed 's/^.*WARNING: //' >&2
fi

python -m asrkt.bin.finish_features "${config_opts[@]}" --nj "$nj" --name "$run" "$data" "$fbankdir"
succeeded=true
rm -rf "$data/.backup"
# The arks of earlier runs (and of the naming before run stamps) are no longer pointed at.
for f in "$fbankdir/raw_fbank_$name".* "$fbankdir/cmvn_$name".ark "$fbankdir/cmvn_$name".*.ark; do
  case $f in "$fbankdir/raw_fbank_$run".* | "$fbankdir/cmvn_$run.ark") ;; *) rm -f "$f" ;; esac
done
log "Succeeded creating fbank features and CMVN stats for $name [elapsed=$((SECONDS - start))s]"
