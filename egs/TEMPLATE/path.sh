# path.sh: the environment of a recipe (sourced by run.sh and kt.sh, reached from egs/<corpus>/path.sh by a
# symlink). Returns non-zero, with a message, when the asrkt package cannot be imported.

# The repository root is two levels above the real location of this file (egs/TEMPLATE/path.sh); the recipe
# is the folder of the (symlinked) path.sh that was sourced.
ASRKT_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
__recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ASRKT_ROOT

export LC_ALL=C
export PYTHONUNBUFFERED=1
# Idle OpenMP threads sleep instead of spinning: with the default policy, two-thread torch jobs on a few
# busy cores (parallel jobs, other users) run up to ten times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# The repository's virtual environment, when there is one (what `source .venv/bin/activate` does, without
# touching the prompt).
if [ -x "$ASRKT_ROOT/.venv/bin/python" ]; then
  export VIRTUAL_ENV=$ASRKT_ROOT/.venv
  case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
  unset PYTHONHOME
fi

# The recipe's utils/ (run_local.py, parse_options.sh, ...); not added twice when sourced again.
case ":$PATH:" in *":$__recipe_dir/utils:"*) ;; *) export PATH="$__recipe_dir/utils:$PATH" ;; esac
unset -v __recipe_dir

if ! __err=$(python -c 'import asrkt' 2>&1); then
  echo "path.sh: python cannot import asrkt (python: $(command -v python || echo 'not found on PATH'); ${__err##*$'\n'}):" \
    "run 'make install' in the repository root $ASRKT_ROOT" >&2
  unset -v __err
  return 1 2> /dev/null || exit 1
fi
unset -v __err
