# cmd.sh: how run.sh/kt.sh launch their jobs (sourced by run.sh). A launcher is called as
#   $train_cmd [--num-threads N] [--gpu G] [--mem M] [--time T] [JOB=1:N] exp/x/log/name.JOB.log <command>...
# with Kaldi run.pl semantics (see utils/run_local.py --help). Edit this copy for your machine.

# This machine: jobs run in parallel, at most --max-jobs-run at once (default: the number of CPUs).
export train_cmd="run_local.py"
export decode_cmd="run_local.py"

# A Slurm cluster: each call is one job array, submitted with sbatch --wait (see utils/run_slurm.py --help); the
# jobs get this shell's environment (PATH, PYTHONPATH), per-task logs as above, Slurm's own output in log/q/.
# Ctrl-C cancels the submitted jobs. A one-node cluster to try it on: the repository's tools/slurm_local.sh.
# export train_cmd="run_slurm.py --partition gpu --gpu 1 --mem 16G --time 24:00:00"
# export decode_cmd="run_slurm.py --partition cpu --mem 4G --time 4:00:00 --max-jobs-run 50"
