# utils/parse_options.sh: Kaldi-style option parsing. Source it (with no arguments) after declaring options:
#
#   nj=4            # number of parallel jobs
#   overwrite=false # redo finished stages
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh
#   [ $# -eq 1 ] || { printf '%s\n' "$help_message" >&2; exit 1; }
#
# Semantics (Kaldi's, with clearer errors):
#   --foo-bar VALUE  sets the already-declared variable foo_bar; an undeclared one is an error.
#   --foo=VALUE      is an error: write "--foo VALUE".
#   a variable whose current value is true/false only accepts true or false.
#   --config FILE    sources FILE (lines "name=value") before the command-line options are applied, so the
#                    command line wins whatever the order; FILE may only set declared variables. --config is
#                    reserved for this: name a YAML-config option of your script otherwise (e.g. --train-config).
#   --help, -h       prints $help_message, then every option of the sourcing script with its current value
#                    (its default, or what earlier options such as run.sh's set) and its comment, taken from
#                    the script's `name=value  # comment` lines (between Kaldi's "# Begin configuration
#                    section." / "# End configuration section." markers when it has them, else all those
#                    before the line sourcing this file), on stdout, and exits 0.
#   Parsing stops at the first argument that is not an option (or after "--"); the rest stays in "$@".
# It exits the sourcing script with status 1 on any error. It must be sourced without arguments, so that its
# `shift`s act on the caller's positional parameters.

__po_die() {
  echo "$0: $*" >&2
  exit 1
}

# The variable named by an option: --foo-bar -> foo_bar, checked to be a declared shell variable. (Locals
# are __po_-prefixed everywhere so that they never shadow a script variable being checked or set.)
__po_varname() {
  __po_name=${1#--}
  __po_name=${__po_name//-/_}
  if ! [[ $__po_name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ $__po_name == __po_* ]]; then
    __po_die "invalid option '$1' (option names are letters, digits, '-' and '_')"
  fi
  if [ -z "${!__po_name+set}" ]; then
    __po_die "unknown option '$1' (this script declares no variable '$__po_name'; see $0 --help)"
  fi
}

__po_is_bool() { [ "$1" = true ] || [ "$1" = false ]; }

# --help: the options declared in the script FILE, one line each: --name value  # comment.
__po_print_options() {
  local __po_line __po_var __po_val __po_in=1 __po_re='^([A-Za-z_][A-Za-z0-9_]*)=([^#]*)(#[[:space:]]*(.*))?$'
  [ -r "$1" ] || return 0
  grep -q '^# Begin configuration section' "$1" && __po_in=0
  echo "Options (--name value; shown with their current values):"
  while IFS= read -r __po_line || [ -n "$__po_line" ]; do
    case $__po_line in
      "# Begin configuration section"*) __po_in=1; continue ;;
      "# End configuration section"*) break ;;
      ". "*parse_options.sh* | "source "*parse_options.sh*) break ;;
    esac
    [ "$__po_in" = 1 ] && [[ $__po_line =~ $__po_re ]] || continue
    __po_var=${BASH_REMATCH[1]}
    [ "$__po_var" != help_message ] && [ -n "${!__po_var+set}" ] || continue
    __po_val=${!__po_var}
    [[ -z $__po_val || $__po_val == *[[:space:]]* ]] && __po_val="\"$__po_val\""
    if [ -n "${BASH_REMATCH[4]}" ]; then
      printf '  --%-20s %-26s # %s\n' "${__po_var//_/-}" "$__po_val" "${BASH_REMATCH[4]}"
    else
      printf '  --%-20s %s\n' "${__po_var//_/-}" "$__po_val"
    fi
  done < "$1"
  echo "  --config FILE              # shell lines name=value, applied before the command line's options"
}

# Before a --config file is sourced: it may only assign declared variables; remember their values.
__po_check_config() {
  local __po_line __po_lineno=0 __po_var
  __po_cvars=()
  __po_colds=()
  [ -f "$1" ] && [ -r "$1" ] || __po_die "config file '$1' (from --config) does not exist or is not readable"
  while IFS= read -r __po_line || [ -n "$__po_line" ]; do
    __po_lineno=$((__po_lineno + 1))
    if [[ $__po_line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]]; then
      __po_var=${BASH_REMATCH[1]}
      if [ -z "${!__po_var+set}" ] || [[ $__po_var == __po_* ]]; then
        __po_die "config file '$1' line $__po_lineno sets '$__po_var', which is not an option of this script"
      fi
      __po_cvars+=("$__po_var")
      __po_colds+=("${!__po_var-}")
    fi
  done < "$1"
}

# After it is sourced: booleans stay booleans.
__po_check_config_bools() {
  local __po_k __po_var
  for __po_k in "${!__po_cvars[@]}"; do
    __po_var=${__po_cvars[$__po_k]}
    if __po_is_bool "${__po_colds[$__po_k]}" && ! __po_is_bool "${!__po_var-}"; then
      __po_die "config file '$1': '$__po_var' expects true or false, got '${!__po_var-}'"
    fi
  done
}

__po_script=${BASH_SOURCE[1]:-$0}  # the script that sourced this file (its options are listed by --help)

# Pass 1: the --config files, left to right, before any command-line option is applied.
__po_args=("$@")
__po_i=0
while [ "$__po_i" -lt "${#__po_args[@]}" ]; do
  case "${__po_args[$__po_i]}" in
    --config)
      # A missing value is reported by pass 2.
      [ $((__po_i + 1)) -lt "${#__po_args[@]}" ] || break
      __po_config=${__po_args[$((__po_i + 1))]}
      __po_check_config "$__po_config"
      # Sourced here, not inside a function, so that its assignments are global.
      # shellcheck disable=SC1090
      . "$__po_config" || __po_die "sourcing config file '$__po_config' failed"
      __po_check_config_bools "$__po_config"
      __po_i=$((__po_i + 2))
      ;;
    --help | -h | -- | --*=*) break ;;
    --*) __po_i=$((__po_i + 2)) ;;
    *) break ;;
  esac
done

# Pass 2: the command-line options, in order (the last one given wins).
while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n\n' "$help_message"
      else
        echo "$0: no help message (the script sets no help_message)" >&2
      fi
      __po_print_options "$__po_script"
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*=*)
      __po_die "options are written '--name value', not '$1' (did you mean '${1%%=*} ${1#*=}'?)"
      ;;
    --config)
      [ $# -ge 2 ] || __po_die "option --config needs a value (a config file)"
      shift 2
      ;;
    --*)
      __po_varname "$1"
      [ $# -ge 2 ] || __po_die "option $1 needs a value"
      if __po_is_bool "${!__po_name-}" && ! __po_is_bool "$2"; then
        __po_die "option $1 expects true or false, got '$2'"
      fi
      printf -v "$__po_name" '%s' "$2"
      shift 2
      ;;
    *) break ;;
  esac
done

unset -v __po_args __po_i __po_name __po_config __po_cvars __po_colds __po_script
unset -f __po_die __po_varname __po_is_bool __po_check_config __po_check_config_bools __po_print_options
true
