# utils/log.sh: logging and stage bookkeeping for recipe scripts. Source it: `. utils/log.sh`.
#
#   log "message"           -> stderr: 2025-01-31T12:00:00 (run.sh:42:main) message
#   die "message"           -> the same with "ERROR: ", then exit 1
#   stage_begin N "what: inputs -> outputs"   logs "Stage N: ..." and starts the stage clock
#   stage_end                                 logs "Stage N: finished [elapsed=...s]"
#   stage_is_done DIR       true when DIR/.done exists (logs that the work is skipped); with overwrite=true it
#                           removes the marker instead and is false, so the work is redone
#   stage_mark_done DIR     writes DIR/.done (atomically) once the outputs in DIR are complete
#
# A stage in kt.sh then reads:
#   if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
#       stage_begin 3 "teacher DNN: data/train -> exp/teacher"
#       if ! stage_is_done exp/teacher; then
#           python -m asrkt.bin.train ...
#           stage_mark_done exp/teacher
#       fi
#       stage_end
#   fi

# Log the message with the place of the call `depth` frames above this function's caller (1: the caller of
# log/die/stage_*), ESPnet-style: (file:line:function).
__log_at() {
  local depth=$1
  shift
  local src=${BASH_SOURCE[$((depth + 1))]:-bash}
  local line=${BASH_LINENO[$depth]:-0}
  local func=${FUNCNAME[$((depth + 1))]:-main}
  printf '%s (%s:%s:%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${src##*/}" "$line" "$func" "$*" >&2
}

log() { __log_at 1 "$@"; }

die() {
  __log_at 1 "ERROR: $*"
  exit 1
}

# check_stages STAGE STOP_STAGE LAST: both whole numbers, STAGE <= LAST and STAGE <= STOP_STAGE, else one error
# line and exit 1 (a range that runs nothing is a mistake, not a success).
check_stages() {
  local x
  for x in "$1" "$2"; do
    [[ $x =~ ^[0-9]+$ ]] || { __log_at 1 "ERROR: --stage and --stop-stage take a whole number, got '$x'"; exit 1; }
  done
  [ "$1" -le "$3" ] || { __log_at 1 "ERROR: --stage $1: there is no such stage (the last is $3)"; exit 1; }
  [ "$1" -le "$2" ] || { __log_at 1 "ERROR: --stage $1 comes after --stop-stage $2: nothing would run"; exit 1; }
}

stage_begin() {
  [ $# -ge 2 ] || { __log_at 1 "ERROR: usage: stage_begin <number> <description>"; exit 1; }
  __stage_number=$1
  shift
  __stage_start=$SECONDS
  __log_at 1 "Stage $__stage_number: $*"
}

stage_end() {
  [ -n "${__stage_start:-}" ] || { __log_at 1 "ERROR: stage_end without stage_begin"; exit 1; }
  __log_at 1 "Stage $__stage_number: finished [elapsed=$((SECONDS - __stage_start))s]"
  unset -v __stage_start
}

stage_is_done() {
  [ $# -eq 1 ] || { __log_at 1 "ERROR: usage: stage_is_done <dir>"; exit 1; }
  [ -e "$1/.done" ] || return 1
  if [ "${overwrite:-false}" = true ]; then
    # Removed before the work is redone, so that a failed redo is not taken for a finished one.
    rm -f "$1/.done"
    __log_at 1 "$1 was done; redoing it (overwrite=true)"
    return 1
  fi
  __log_at 1 "$1 is done ($1/.done exists): skipping it; --overwrite true redoes it"
  return 0
}

stage_mark_done() {
  [ $# -eq 1 ] || { __log_at 1 "ERROR: usage: stage_mark_done <dir>"; exit 1; }
  mkdir -p "$1"
  rm -f "$1"/.done.tmp.*  # one that a kill between the two lines below left (a folder is marked by one run at a time)
  printf 'finished %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" > "$1/.done.tmp.$$"
  mv -f "$1/.done.tmp.$$" "$1/.done"
}
