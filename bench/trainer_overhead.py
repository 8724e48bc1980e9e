"""Trainer overhead: frames/s of asrkt's trainer vs a bare PyTorch loop on the same model and batches.

    python bench/trainer_overhead.py [--train-dir egs/an4/data/train_nodev] [--max-batches N] [--repeats 2]
        [--key value ...]   (any TrainConfig key, e.g. --model.lstm.bidirectional false)

The bare loop gets the batches already padded in memory and does only forward, CTC, backward, gradient
clipping and the optimizer step; the trainer's epoch (asrkt.train.trainer.Trainer.train_epoch) adds batch
collation, NaN checks, loss bookkeeping and progress logging. Both start from the same weights and run the
same batches (epoch 1's order); runs alternate (bare, trainer, bare, trainer, ...) so machine load affects
both alike, and the best run of each is compared. Goal: ratio >= 0.9.

Default model: 3 x 256 BLSTM over 3 stacked frames (subsampling 3, as the recipes), CTC, on AN4's train_nodev when egs/an4 has features, else on a synthetic
data dir (random features, random digit transcripts).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as asrkt.bin.train does, before torch loads OpenMP

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asrkt.utils.seed import derive_seed, seed_everything  # noqa: E402
from asrkt.train.trainer import Trainer, TrainConfig  # noqa: E402
from asrkt.utils.config import add_config_arguments, resolve  # noqa: E402

DEFAULTS = {"model.type": "lstm", "model.subsampling": 3, "model.lstm.num_layers": 3, "model.lstm.cells": 256,
            "model.lstm.bidirectional": True, "model.lstm.dropout": 0.1, "batch.max_frames": 20000,
            "schedule.max_epochs": 1}


def synthetic_data_dir(root: Path, num_utts: int = 200, dim: int = 40, seed: int = 0) -> Path:
    """A data dir with random features (200-600 frames), per-speaker CMVN and digit transcripts."""
    import kaldiio

    from asrkt.data.kaldi_dir import write_data_dir

    rng = np.random.default_rng(seed)
    words = ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "ZERO"]
    d = root / "data"
    utts = [f"spk{i % 10}-u{i:04d}" for i in range(num_utts)]
    utt2spk = {u: u.split("-")[0] for u in utts}
    text = {u: " ".join(rng.choice(words, size=rng.integers(2, 7))) for u in utts}
    write_data_dir(d, wav_scp={u: "/dev/null" for u in utts}, text=text, utt2spk=utt2spk)
    frames = {}
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for u in sorted(utts):
            frames[u] = int(rng.integers(200, 600))
            w(u, rng.standard_normal((frames[u], dim)).astype(np.float32))
    with kaldiio.WriteHelper(f"ark,scp:{d}/cmvn.ark,{d}/cmvn.scp") as w:
        for spk in sorted(set(utt2spk.values())):
            stats = np.zeros((2, dim + 1))
            stats[0, -1] = 1000.0
            stats[1, :-1] = 1000.0
            w(spk, stats)
    (d / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in sorted(frames.items())))
    (d / "feats_info.yaml").write_text(yaml.safe_dump({"kind": "synthetic", "dim": dim, "frame_shift_ms": 10.0,
                                                       "config_hash": "synthetic"}))
    return d


def bare_loop(model, batches, cfg: TrainConfig, device) -> float:
    """Forward, CTC (sum / frames), backward, clip, Adam step over pre-padded batches; returns frames/s."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    seed_everything(derive_seed(cfg.seed, "epoch", 1))
    frames = 0
    start = time.perf_counter()
    for feats, lengths, flat, target_lengths in batches:
        logits, out_lengths = model(feats, lengths)
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, flat, out_lengths, target_lengths, reduction="sum", zero_infinity=True)
        loss = loss / out_lengths.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        frames += int(lengths.sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    an4 = REPO / "egs" / "an4" / "data" / "train_nodev"
    parser.add_argument("--train-dir", default=str(an4) if (an4 / "feats_info.yaml").is_file() else None,
                        help="data dir with features (default: AN4 train_nodev if present, else synthetic)")
    parser.add_argument("--lang-dir", default=None, help="default: a char tokenizer from the training text")
    parser.add_argument("--max-batches", type=int, default=0, help="only the first N batches (0 = all)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop (alternating)")
    add_config_arguments(parser, TrainConfig)
    args = parser.parse_args(argv)
    # bench defaults < --config file < --key value options
    overrides = {k[5:].replace("__", "."): yaml.safe_load(v) for k, v in vars(args).items()
                 if k.startswith("cfg__") and v is not None}
    cfg = resolve(resolve(TrainConfig, overrides=DEFAULTS), args.config, overrides)
    tmp = Path(tempfile.mkdtemp(prefix="asrkt_bench_"))
    train_dir = Path(args.train_dir) if args.train_dir else synthetic_data_dir(tmp)
    lang_dir = args.lang_dir
    if lang_dir is None:
        from asrkt.data.kaldi_dir import read_table
        from asrkt.targets import train_tokenizer

        lang_dir = tmp / "lang"
        train_tokenizer(read_table(train_dir / "text").values(), lang_dir, kind="char")

    trainer = Trainer(cfg, train_dir, train_dir, tmp / "exp", lang_dir=lang_dir)
    trainer.setup()
    init_state = copy.deepcopy(trainer.model.state_dict())
    init_opt = copy.deepcopy(trainer.optimizer.state_dict())
    sampler = trainer.train_sampler
    sampler.set_epoch(1)
    if args.max_batches:
        sampler._batches = sampler.batches()[:args.max_batches]  # bench only: a prefix of epoch 1
    device = trainer.device
    batches = []
    for idx in sampler.batches():
        items = [trainer.train_set[i] for i in idx]
        feats = torch.nn.utils.rnn.pad_sequence([it.feats for it in items], batch_first=True).to(device)
        lengths = torch.tensor([len(it.feats) for it in items], dtype=torch.long, device=device)
        flat = torch.tensor([t for it in items for t in it.inputs["hard_targets"]], dtype=torch.long, device=device)
        target_lengths = torch.tensor([len(it.inputs["hard_targets"]) for it in items], dtype=torch.long)
        batches.append((feats, lengths, flat, target_lengths))
    frames = sum(int(b[1].sum()) for b in batches)
    from asrkt.models import describe

    print(f"data: {train_dir}, {len(batches)} batches, {frames} frames; model: {describe(trainer.model)}; "
          f"device {device}, {torch.get_num_threads()} threads", flush=True)

    bare_rates, trainer_rates = [], []
    for r in range(args.repeats):
        model = copy.deepcopy(trainer.model)
        model.load_state_dict(init_state)
        bare_rates.append(bare_loop(model, batches, cfg, device))
        print(f"run {r + 1}: bare loop {bare_rates[-1]:.0f} frames/s", flush=True)
        trainer.model.load_state_dict(init_state)
        trainer.optimizer.load_state_dict(init_opt)
        stats = trainer.train_epoch(1)
        trainer_rates.append(stats["frames_per_s"])
        print(f"run {r + 1}: trainer   {trainer_rates[-1]:.0f} frames/s ({stats['train_time_s']:.1f}s for the "
              f"batches; a full epoch of {sum(trainer.train_set.num_frames)} frames would take "
              f"{sum(trainer.train_set.num_frames) / trainer_rates[-1]:.1f}s)", flush=True)
    bare, ours = max(bare_rates), max(trainer_rates)
    print(f"bare loop: {bare:.0f} frames/s")
    print(f"trainer:   {ours:.0f} frames/s")
    print(f"ratio trainer/bare: {ours / bare:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
