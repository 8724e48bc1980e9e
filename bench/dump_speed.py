"""Posterior-dump speed against the teacher's bare forward pass on the same batches, and bytes per frame.

    .venv/bin/python bench/dump_speed.py [--model exp/teacher/final.pt --data-dir data/train]
        [--num-classes 30] [--utts 200] [--topk 10] [--batch-frames 20000] [--device auto] [--repeats 3]

Without --model/--data-dir a random-weight teacher (the default DNN config: 4 x 512, context +-5) and a
synthetic data dir (random 40-dim features with CMVN stats) are made in a temporary folder.

Measured, best of --repeats runs after one warm-up:
  forward : model(feats, lengths) over batches already in (device) memory, synchronised; the ceiling
  dense   : asrkt.transfer.dump.dump_posteriors, log-probabilities (reading features, CMVN, forward,
            log-softmax, copy to host, writing the archive and scp)
  top-k   : the same with --topk K (Kaldi Posterior archive)
Printed: input frames/s of each, the ratios dump / forward (goal >= 0.8; top-k >= 0.9), and archive bytes per output frame
dense vs top-k.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asrkt.decode.batches import inference_loader, load_checkpoint  # noqa: E402
from asrkt.utils.device import resolve_device  # noqa: E402
from asrkt.transfer.dump import dump_posteriors  # noqa: E402


def synthetic_setup(root: Path, num_utts: int, num_classes: int, dim: int = 40, seed: int = 0):
    """A random-weight DNN teacher checkpoint and a data dir of random features (lengths 100..600 frames)."""
    from asrkt.data.kaldi_dir import write_data_dir
    from asrkt.features.cmvn import compute_cmvn_stats
    from asrkt.features.fbank import FbankConfig
    from asrkt.features.info import make_feats_info, write_feats_info
    from asrkt.io import MatrixWriter
    from asrkt.models import ModelConfig, build_model, save_checkpoint

    rng = np.random.default_rng(seed)
    data = root / "data"
    data.mkdir(parents=True)
    feats = {f"spk{i % 10}-utt{i:05d}": rng.standard_normal((int(rng.integers(100, 600)), dim)).astype(np.float32)
             for i in range(num_utts)}
    utt2spk = {u: u.split("-")[0] for u in feats}
    with MatrixWriter(f"ark,scp:{data}/feats.ark,{data}/feats.scp") as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    with MatrixWriter(f"ark,scp:{data}/cmvn.ark,{data}/cmvn.scp") as w:
        for spk in sorted(set(utt2spk.values())):
            w.write(spk, compute_cmvn_stats(f for u, f in feats.items() if utt2spk[u] == spk))
    write_data_dir(data, wav_scp={u: "/dev/null" for u in feats}, text=None, utt2spk=utt2spk,
                   utt2num_frames={u: str(f.shape[0]) for u, f in feats.items()})
    write_feats_info(data, make_feats_info(FbankConfig(num_mel_bins=dim), len(feats),
                                           sum(f.shape[0] for f in feats.values())))
    model_path = root / "teacher.pt"
    torch.manual_seed(seed)
    save_checkpoint(model_path, build_model(ModelConfig(type="dnn"), dim, num_classes))
    return model_path, data


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(model_path, data_dir, batch_frames: int, device: torch.device, repeats: int) -> tuple[float, int]:
    """Best seconds of the forward pass alone over the dump's batches, and their input frames."""
    model, _ = load_checkpoint(model_path, device=device)
    _, loader = inference_loader(data_dir, batch_frames, in_memory=True)
    batches = [(b.feats.to(device), b.lengths.to(device)) for b in loader]
    frames = int(sum(int(lengths.sum()) for _, lengths in batches))
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first run is a warm-up
            sync(device)
            t0 = time.perf_counter()
            for feats, lengths in batches:
                model(feats, lengths)
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return best, frames


def timed_dump(model_path, data_dir, out: Path, batch_frames: int, device: str, topk: int, repeats: int):
    best, stats = float("inf"), None
    for r in range(repeats + 1):
        wspec = f"ark,scp:{out}/post.{r}.ark,{out}/post.{r}.scp"
        stats = dump_posteriors(model_path, data_dir, wspec, topk=topk, batch_frames=batch_frames, device=device)
        best = min(best, stats.seconds)
    return best, stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="teacher checkpoint (default: random-weight DNN)")
    p.add_argument("--data-dir", default=None, help="data dir with features (default: synthetic)")
    p.add_argument("--num-classes", type=int, default=30, help="classes of the synthetic teacher")
    p.add_argument("--utts", type=int, default=200, help="utterances of the synthetic data dir")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--batch-frames", type=int, default=20000)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    import logging

    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="dump_speed.") as tmp:
        tmp = Path(tmp)
        if args.model and args.data_dir:
            model_path, data_dir = Path(args.model), Path(args.data_dir)
        elif args.model or args.data_dir:
            p.error("give both --model and --data-dir, or neither")
        else:
            model_path, data_dir = synthetic_setup(tmp / "setup", args.utts, args.num_classes)
        fwd_s, frames = bare_forward(model_path, data_dir, args.batch_frames, device, args.repeats)
        (tmp / "dense").mkdir()
        (tmp / "topk").mkdir()
        dense_s, dense = timed_dump(model_path, data_dir, tmp / "dense", args.batch_frames, args.device, 0,
                                    args.repeats)
        topk_s, topk = timed_dump(model_path, data_dir, tmp / "topk", args.batch_frames, args.device, args.topk,
                                  args.repeats)
        model, _ = load_checkpoint(model_path)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch threads {torch.get_num_threads()}, teacher {model.num_classes} classes, "
          f"{model.num_params() / 1e6:.2f}M params, {dense.utts} utts, {frames} input frames, "
          f"batch frames {args.batch_frames}, best of {args.repeats}")
    rows = [("forward", fwd_s), ("dense dump", dense_s), (f"top-{args.topk} dump", topk_s)]
    for name, s in rows:
        print(f"  {name:<12} {s:8.3f} s  {frames / s:12.0f} frames/s")
    print(f"  ratio dense dump / forward: {fwd_s / dense_s:.3f} (goal >= 0.8)")
    print(f"  ratio top-{args.topk} dump / forward: {fwd_s / topk_s:.3f}")
    bpf_dense, bpf_topk = dense.bytes / dense.frames, topk.bytes / topk.frames
    print(f"  bytes/frame dense {bpf_dense:.1f}, top-{args.topk} {bpf_topk:.1f} (top-k / dense = "
          f"{bpf_topk / bpf_dense:.3f})")
    return {"forward_s": fwd_s, "dense_s": dense_s, "topk_s": topk_s, "frames": frames,
            "bytes_per_frame_dense": bpf_dense, "bytes_per_frame_topk": bpf_topk}


if __name__ == "__main__":
    main()
