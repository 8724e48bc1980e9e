"""Train an acoustic model: the DNN teacher, the KT student, fine-tuning, the baselines (one tool for all).

    python -m asrkt.bin.train --config conf/x.yaml [--key value ...] --train-dir data/train \\
        --valid-dir data/dev --targets-dir data/lang_char --exp-dir exp/x \\
        [--train-post exp/teacher/post_train --valid-post exp/teacher/post_dev] \\
        [--init-from exp/y/final.pt] [--teacher-model exp/t/final.pt] [--seed N]

The loss is a weighted sum of terms (``loss.terms``, asrkt.train.terms); the shorthand ``loss.kd_alpha``
picks the classic systems: 0 = the objective's loss on the transcripts (teacher, fine-tuning with
--init-from, from-scratch baseline), 1 = the teacher's soft targets only (KT pre-training;
--train-post/--valid-post), between = KT as a regulariser. Every config key is also an option (``--optim.lr 0.0005``,
``--schedule.max-epochs 10``); ``--print-config`` shows the resolved config.

Writes to the exp dir: config.yaml, replay.sh, log/train.log, checkpoints/, final.pt, summary.tsv,
train_curves.png (see asrkt.train.trainer). Rerun with the same arguments to resume after an interruption;
a changed config is refused (start over in a new exp dir, or delete the old one).

Data-parallel training (DDP; gloo on the CPU, NCCL on CUDA, one GPU per process): ``--nproc N`` starts N
processes on this machine through torchrun's launcher (as icefall's ``--world-size`` and ESPnet's ``--ngpu``
start theirs), or start it under torchrun yourself (several nodes):
``torchrun --nnodes M --nproc-per-node N ... -m asrkt.bin.train ...``. The global batch (batch.max_frames) is
the same as with one process and split between the processes, so the result is the one-process result up to
float rounding; rank 0 writes the exp folder (see docs/distributed.md).
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: with the default (spinning) wait policy, 2 threads on 2 cores shared with any other
# busy process run ~10x slower (measured: 650 vs 6500 frames/s for a 3x256 BLSTM); passive waiting avoids it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from asrkt.train.distributed import DistInfo, destroy_process_group, die_with_parent  # noqa: E402
from asrkt.train.trainer import Trainer, TrainConfig  # noqa: E402
import asrkt.train.methods  # noqa: E402,F401 (registers pkt, dils, tli)
from asrkt.utils.atomic import atomic_write_text  # noqa: E402
from asrkt.utils.cli import main_wrapper  # noqa: E402
from asrkt.utils.config import add_config_arguments, config_from_args, to_yaml  # noqa: E402
from asrkt.utils.errors import AsrktError  # noqa: E402
from asrkt.utils.logging import log_environment, setup_logging  # noqa: E402

logger = logging.getLogger("asrkt.bin.train")


def write_replay(exp_dir: Path, argv: list[str], world: int = 1) -> None:
    """``replay.sh``: the exact command, run from the directory it was run in (the recipe dir)."""
    cwd = os.getcwd()
    started_by_torchrun = world > 1 and "--nproc" not in argv
    text = ("#!/usr/bin/env bash\n"
            "# Replays the training command of this exp folder (written by asrkt.bin.train).\n"
            + (f"# (It ran as {world} processes started by torchrun: replay it under torchrun the same way.)\n"
               if started_by_torchrun else "")
            + f"cd {shlex.quote(cwd)} || exit 1\n"
            "[ -f ./path.sh ] && . ./path.sh\n"
            f"exec python -m asrkt.bin.train {' '.join(shlex.quote(a) for a in argv)}\n")
    path = exp_dir / "replay.sh"
    atomic_write_text(path, text)
    path.chmod(0o755)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", required=True, help="training data dir (features + CMVN, text)")
    parser.add_argument("--valid-dir", required=True, help="dev data dir: learning-rate schedule, model choice")
    parser.add_argument("--exp-dir", required=True, help="output folder (resumed if it has checkpoints)")
    parser.add_argument("--targets-dir", "--lang-dir", dest="targets_dir", default=None,
                        help="the objective's targets: the tokenizer's lang dir for ctc, the alignment dir for "
                             "frame_ce (needed by terms on hard targets and for the dev metric)")
    parser.add_argument("--train-post", default=None, help="teacher posterior dir of the training set")
    parser.add_argument("--valid-post", default=None, help="teacher posterior dir of the dev set")
    parser.add_argument("--verify-posteriors", action="store_true",
                        help="before training, read --train-post/--valid-post back and check them against the "
                             "checksum and counts in their post_info.yaml (asrkt.bin.finish_posteriors --verify)")
    parser.add_argument("--init-from", default=None, help="model checkpoint to initialise the weights from "
                                                           "(init.method / init.param say how)")
    parser.add_argument("--teacher-model", default=None,
                        help="teacher checkpoint run alongside the student, for terms on its on-the-fly outputs")
    parser.add_argument("--nproc", type=int, default=1,
                        help="data-parallel training processes on this machine (DDP through torchrun's launcher; "
                             "on CUDA one GPU each); under torchrun: leave it out")
    parser.add_argument("--log-level", default="INFO")
    add_config_arguments(parser, TrainConfig)
    return parser


def launch(nproc: int, argv: list[str], exp_dir: Path) -> None:
    """Run this command in ``nproc`` processes through torchrun's launcher (its --standalone rendezvous on a free
    local port); a failure becomes one line (each process has printed its own error above it)."""
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Its log lines (a glog-style line per failed process, ...) would repeat what the processes said themselves.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"asrkt-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, sys.executable)("-m", "asrkt.bin.train", *argv)
    except ChildFailedError as e:
        rank, failure = min(e.failures.items())
        raise AsrktError(f"training failed in {len(e.failures)} of {nproc} processes (rank {rank}: exit code "
                         f"{failure.exitcode}); the processes' errors are above and in "
                         f"{exp_dir / 'log' / 'train.log'}") from None
    except SignalException as e:  # SIGTERM/SIGINT: the launcher has stopped the processes
        logger.error("stopped by signal %s", e.sigval.name)
        sys.exit(128 + int(e.sigval))


@main_wrapper
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args, TrainConfig)  # a bad config fails here, before any process starts
    dist = DistInfo.from_env()
    if args.nproc < 1:
        raise AsrktError(f"--nproc must be >= 1, got {args.nproc}")
    if dist.enabled:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
        if args.nproc not in (1, local_world):
            raise AsrktError(f"--nproc {args.nproc} but torchrun started {local_world} processes on this node: "
                             "give one or the other")
        die_with_parent()
    elif args.nproc > 1:
        setup_logging(args.log_level)
        return launch(args.nproc, argv, Path(args.exp_dir))
    exp_dir = Path(args.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    # Rank 0 logs everything; the others only their warnings and errors (into the same train.log).
    setup_logging(args.log_level if dist.is_main else "WARNING", exp_dir / "log" / "train.log")
    from asrkt.utils.device import resolve_device

    log_environment(logger, {"seed": cfg.seed, "device": resolve_device(cfg.device),
                             "processes": f"{dist.world} (torch.distributed; rank 0 writes the exp folder)"
                             if dist.enabled else 1,
                             "threads": f"{cfg.num_threads} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})", "exp_dir": exp_dir, "train_dir": args.train_dir,
                             "valid_dir": args.valid_dir, "targets_dir": args.targets_dir, "train_post": args.train_post,
                             "valid_post": args.valid_post, "init_from": args.init_from, "teacher_model": args.teacher_model,
                             "resolved config": "\n" + to_yaml(cfg)})
    try:
        if args.verify_posteriors and dist.is_main:  # (the other ranks wait for rank 0 in the process group)
            from asrkt.transfer.dump import verify_posteriors

            for post, data in ((args.train_post, args.train_dir), (args.valid_post, args.valid_dir)):
                if post:
                    verify_posteriors(post, data_dir=data)
        trainer = Trainer(cfg, args.train_dir, args.valid_dir, exp_dir, targets_dir=args.targets_dir,
                          train_post=args.train_post, valid_post=args.valid_post, init_from=args.init_from,
                          teacher_model=args.teacher_model, dist=dist)
        trainer.check_resume()  # before replay.sh is rewritten: a refused resume leaves the folder as it was
        if dist.is_main:
            write_replay(exp_dir, argv, dist.world)
        trainer.run()
    except AsrktError as e:  # into train.log too, not only on stderr
        logger.error("%s", e)
        raise
    finally:
        destroy_process_group()


if __name__ == "__main__":
    main()
