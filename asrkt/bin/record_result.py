"""Write the result record of one trained and decoded system: ``<recipe>/exp/results/<system>.yaml``.

    python -m asrkt.bin.record_result --recipe-dir egs/digits --system student_kt_ft \
        --exp-dir exp/student_kt_ft --train-dir data/train --seed 1 [--group lstm_kt_finetune]
        [--data-size-utts N --data-hours H] [--pretrain-exp-dir exp/student_kt] [--command "..."]

The record holds the system, its group (--group, else from exp/train_info.yaml or config.yaml: model type,
loss terms, --init-from; never from the name), corpus, training-data size, seed, config hash (of
exp/config.yaml), commit, dev/test WER and CER (from exp/decode_<set>/score.yaml), training time, epochs and,
from train_info.yaml when the trainer wrote it, loss_terms, best_epoch and stop_reason; date and command.
Records of a run stay under exp/ (--out-dir); ``asrkt.bin.make_results --promote`` makes them reference
results of the recipe. Relative --exp-dir, --train-dir and --out-dir are taken relative to --recipe-dir.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from asrkt.score.results import DECODE_PREFIXES, GROUPS, data_size, make_record, write_record
from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import fail
from asrkt.utils.logging import git_commit, setup_logging

logger = logging.getLogger(__name__)
REPLAY = "replay.sh"  # written by asrkt.bin.train: the exact training command


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe-dir", required=True, help="egs/<corpus>")
    p.add_argument("--out-dir", default="exp/results",
                   help="where the record goes (default: exp/results; the committed reference records in "
                        "results/ change only through make_results --promote)")
    p.add_argument("--system", required=True, help="system name (the record's file name)")
    p.add_argument("--exp-dir", required=True, help="the system's exp folder (decode_<set>/score.yaml inside)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--train-dir", default=None, help="training data dir, for the data size")
    p.add_argument("--data-size-utts", type=int, default=None, help="training utterances (overrides --train-dir)")
    p.add_argument("--data-hours", type=float, default=None, help="training hours (overrides --train-dir)")
    p.add_argument("--group", choices=list(GROUPS), default=None,
                   help="table group (default: from the exp folder's train_info.yaml or config.yaml)")
    p.add_argument("--pretrain-exp-dir", default=None,
                   help="for a fine-tuned system: the pre-training exp folder, whose time is recorded too "
                        "(default: the folder of --init-from in the training command, if any)")
    p.add_argument("--decode-prefix", default="decode_", choices=DECODE_PREFIXES,
                   help="the decode folders to take the WERs from: <exp-dir>/<prefix><set> (decode_nolm_: a hybrid "
                        "system scored without the LM; decode_lm_: a CTC system through TLG with the LM; each a "
                        "record of its own)")
    p.add_argument("--command", default=None,
                   help="the command that reproduces the system (default: the training command in the exp "
                        "folder's replay.sh, else this command)")
    return p


def _resolve(recipe_dir: Path, path) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else recipe_dir / path


def replay_command(exp_dir: Path) -> str | None:
    """The training command of ``exp_dir/replay.sh`` (its last line, without ``exec``), if there is one."""
    f = exp_dir / REPLAY
    if not f.is_file():
        return None
    lines = [ln.strip() for ln in f.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        return None
    return lines[-1][len("exec "):] if lines[-1].startswith("exec ") else lines[-1]


def init_from_exp_dir(command: str, recipe_dir: Path) -> str | None:
    """For a fine-tuned system: the exp folder of ``--init-from X/final.pt`` in its training command, when it has
    a summary.tsv (its training time is part of the system's cost)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, w in enumerate(words[:-1]):
        if w in ("--init-from", "--init_from"):
            folder = Path(words[i + 1]).parent
            if (_resolve(recipe_dir, folder) / "summary.tsv").is_file():
                return str(folder)
    return None


@main_wrapper
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    setup_logging()
    recipe_dir = Path(args.recipe_dir)
    if not recipe_dir.is_dir():
        raise fail("recipe directory not found", recipe_dir)
    exp_dir = _resolve(recipe_dir, args.exp_dir)
    data = {"utts": None, "hours": None}
    if args.train_dir:
        data.update(data_size(_resolve(recipe_dir, args.train_dir)))
        data["set"] = Path(args.train_dir).name
    if args.data_size_utts is not None:
        data["utts"] = args.data_size_utts
    if args.data_hours is not None:
        data["hours"] = args.data_hours
    command = (args.command or replay_command(exp_dir)
               or "python -m asrkt.bin.record_result " + " ".join(shlex.quote(a) for a in argv))
    pretrain = args.pretrain_exp_dir or init_from_exp_dir(command, recipe_dir)
    record = make_record(args.system, exp_dir=exp_dir, recipe_dir=recipe_dir, seed=args.seed,
                         commit=git_commit(recipe_dir.resolve()), command=command, data=data, group=args.group,
                         pretrain_exp_dir=_resolve(recipe_dir, pretrain), decode_prefix=args.decode_prefix)
    record["exp_dir"] = args.exp_dir  # as given: relative to the recipe, not this machine's path
    if pretrain:
        record["pretrain_exp_dir"] = str(pretrain)
    out = _resolve(recipe_dir, args.out_dir) / f"{args.system}.yaml"
    write_record(record, out)
    sets = ", ".join(f"{k} WER {v['wer']:.2f}" for k, v in record["results"].items())
    logger.info("wrote %s (%s)", out, sets)
    return out


if __name__ == "__main__":
    main()
