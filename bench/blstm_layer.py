"""BLSTM layers on the CPU: asrkt's BiLstmLayer (two forward-only LSTMs on the padded batch) against
nn.LSTM(bidirectional=True) on the packed batch, which computes the same (tests/test_models.py checks it).

    python bench/blstm_layer.py [--utts 60] [--min-steps 50] [--max-steps 140] [--input 120] [--cells 256]
        [--layers 3] [--repeats 3] [--threads 1]

One training step each (forward, a loss over the valid steps, backward) over a batch of utterances of random
lengths, as the AN4 hybrid student sees it (frame_skip 3: 150-420 frames are 50-140 steps of 3 x 40 inputs).
Runs alternate (packed, padded, packed, ...) so that machine load affects both alike; the best of each is
compared. Goal: the padded layer at least as fast (ratio packed / padded >= 1). For scale, the same step of the
unidirectional LSTM of the same size (its layers read cells, not 2 x cells, inputs) is timed too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asrkt.models.lstm import BiLstmLayer  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=60)
    p.add_argument("--min-steps", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=140)
    p.add_argument("--input", type=int, default=120)
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p


def packed_step(layers, x, lengths, mask) -> None:
    h = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    for lstm in layers:
        h, _ = lstm(h)
    out, _ = pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
    (out * mask).pow(2).mean().backward()


def padded_step(layers, x, lengths, mask) -> None:
    h = x
    for layer in layers:
        h = layer(h, lengths)
    (h * mask).pow(2).mean().backward()


def forward_only_step(layers, x, lengths, mask) -> None:
    h = x
    for lstm in layers:
        h = lstm(h)[0]
    (h * mask).pow(2).mean().backward()


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = torch.randint(args.min_steps, args.max_steps + 1, (args.utts,))
    steps = int(lengths.max())
    x = torch.randn(args.utts, steps, args.input)
    mask = (torch.arange(steps).view(1, -1) < lengths.view(-1, 1)).unsqueeze(-1).float()
    dims = [args.input] + [2 * args.cells] * (args.layers - 1)
    packed = [torch.nn.LSTM(d, args.cells, batch_first=True, bidirectional=True) for d in dims]
    padded = [BiLstmLayer(d, args.cells, 0) for d in dims]
    forward_only = [torch.nn.LSTM(d, args.cells, batch_first=True)
                    for d in [args.input] + [args.cells] * (args.layers - 1)]
    best = {"packed": float("inf"), "padded": float("inf"), "LSTM": float("inf")}
    for _ in range(args.repeats):
        for name, layers, step in (("packed", packed, packed_step), ("padded", padded, padded_step),
                                   ("LSTM", forward_only, forward_only_step)):
            start = time.perf_counter()
            step(layers, x, lengths, mask)
            best[name] = min(best[name], time.perf_counter() - start)
    frames = int(lengths.sum())
    print(f"{args.utts} utterances, {frames} steps, {args.layers} x {args.cells} BLSTM, {args.threads} thread(s), "
          f"best of {args.repeats}:")
    for name in best:
        print(f"  {name:7s} {best[name]:8.3f} s  {frames / best[name]:9.0f} steps/s")
    ratio = best["packed"] / best["padded"]
    print(f"  ratio packed / padded: {ratio:.2f} (goal >= 1); the BLSTM (padded) costs "
          f"{best['padded'] / best['LSTM']:.1f} x the unidirectional LSTM's step")
    return {**best, "ratio": ratio}


if __name__ == "__main__":
    main()
