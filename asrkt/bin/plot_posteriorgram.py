"""Posteriorgram of one utterance: dumped teacher posteriors and/or models' outputs, one panel each.

    python -m asrkt.bin.plot_posteriorgram --utt spk1-utt3 --lang-dir data/lang_char \
        --post-scps exp/teacher/post_dev/post.scp \
        --models exp/student_kt_ft/final.pt --data-dir data/dev --out posteriorgram.png

``--post-scps``: posterior scripts of :mod:`asrkt.bin.dump_posteriors` (dense or top-k; ``post_info.yaml``
beside each says which). ``--models``: checkpoints whose posteriors are computed on ``--data-dir``'s features.
Token labels from ``--lang-dir``'s tokens.txt on the y-axis, time in seconds on the x-axis. With more than
``--max-classes`` classes, only those most probable somewhere in the utterance are shown.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from asrkt.utils.cli import main_wrapper
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.logging import setup_logging
from asrkt.utils.plotting import new_figure, save_png

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utt", required=True, help="utterance id")
    p.add_argument("--post-scps", nargs="*", default=[], help="dumped posterior scripts (post.scp)")
    p.add_argument("--models", nargs="*", default=[], help="checkpoints to compute posteriors with")
    p.add_argument("--data-dir", default=None, help="data dir with the utterance's features (for --models)")
    p.add_argument("--lang-dir", required=True, help="lang dir (tokens.txt) for the class labels")
    p.add_argument("--labels", nargs="*", default=None, help="panel titles, one per scp then per model")
    p.add_argument("--max-classes", type=int, default=48, help="show at most this many classes")
    p.add_argument("--out", required=True, help="PNG to write")
    return p


def posteriors_from_scp(scp, utt: str) -> tuple[np.ndarray, float]:
    """(probabilities (frames, classes), frame shift in ms) of ``utt`` from a dumped posterior script."""
    from asrkt.io import load_posterior_scp, load_scp
    from asrkt.transfer.soft_targets import POST_INFO, PosteriorInfo

    scp = Path(scp)
    info = PosteriorInfo.load(scp.parent / POST_INFO)
    if info.sparse:
        table = load_posterior_scp(scp)
        if utt not in table:
            raise fail("utterance not in the posterior script", scp, utt)
        probs = np.zeros((len(table[utt]), info.num_classes), dtype=np.float32)
        for t, frame in enumerate(table[utt]):
            for i, w in frame:
                probs[t, i] = w
    else:
        table = load_scp(scp)
        if utt not in table:
            raise fail("utterance not in the posterior script", scp, utt)
        # softmax(x) is the posterior for logits and for log-probabilities (stored at temperature T: x * T)
        x = np.asarray(table[utt], dtype=np.float64) * info.temperature
        x = np.exp(x - x.max(axis=1, keepdims=True))
        probs = (x / x.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs, info.frame_shift_ms


def posteriors_from_model(model_path, data_dir, utt: str) -> tuple[np.ndarray, float]:
    """(probabilities (frames, classes), frame shift in ms) of ``utt`` computed by the model."""
    import torch

    from asrkt.data.dataset import UtteranceDataset
    from asrkt.decode.batches import check_model_input, load_checkpoint
    from asrkt.features.info import read_feats_info

    if data_dir is None:
        raise AsrktError("--models needs --data-dir (the features to run the models on)")
    model, _ = load_checkpoint(model_path)
    dataset = UtteranceDataset(data_dir, in_memory=False)
    check_model_input(model, dataset, model_path)
    if utt not in dataset.utts:
        raise fail("utterance not in feats.scp", Path(data_dir) / "feats.scp", utt)
    feats = dataset.feats(dataset.utts.index(utt)).unsqueeze(0)
    with torch.inference_mode():
        logits, out_lengths = model(feats, torch.tensor([feats.shape[1]]))
    probs = torch.softmax(logits[0, :int(out_lengths[0])].float(), dim=-1).numpy()
    return probs, float(read_feats_info(data_dir)["frame_shift_ms"]) * model.subsampling


def default_label(path) -> str:
    """``exp/teacher/post_dev/post.scp`` -> ``teacher (post_dev)``, ``exp/x/final.pt`` -> ``x``."""
    path = Path(path).resolve()
    if path.suffix == ".scp":
        return f"{path.parent.parent.name} ({path.parent.name})"
    return path.parent.name or path.stem


def choose_classes(panels: list[np.ndarray], max_classes: int) -> list[int]:
    num_classes = panels[0].shape[1]
    if num_classes <= max_classes:
        return list(range(num_classes))
    peak = np.max([p.max(axis=0) for p in panels], axis=0)
    keep = set(np.argsort(-peak, kind="stable")[:max_classes].tolist()) | {0}  # always show the blank
    return sorted(keep)


def plot(panels, labels, tokens, shifts_ms, title, out, max_classes: int = 48) -> None:
    classes = choose_classes(panels, max_classes)
    height = max(2.0, 0.14 * len(classes) + 1.0)
    fig = new_figure(figsize=(10, height * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)
    for ax, probs, label, shift in zip(axes[:, 0], panels, labels, shifts_ms):
        dur = probs.shape[0] * shift / 1000.0
        im = ax.imshow(probs[:, classes].T, aspect="auto", origin="lower", interpolation="nearest",
                       cmap="viridis", vmin=0.0, vmax=1.0, extent=(0.0, dur, -0.5, len(classes) - 0.5))
        ax.set_yticks(range(len(classes)), [tokens[c] if c < len(tokens) else str(c) for c in classes],
                      fontsize=max(4, min(8, int(400 / max(len(classes), 1)))))
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("token")
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    save_png(fig, out, dpi=110)


@main_wrapper
def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    from asrkt.targets import read_tokens

    sources = [("scp", s) for s in args.post_scps] + [("model", m) for m in args.models]
    if not sources:
        raise AsrktError("nothing to plot: give --post-scps and/or --models")
    labels = args.labels or [default_label(s) for _, s in sources]
    if len(labels) != len(sources):
        raise AsrktError(f"{len(labels)} --labels for {len(sources)} panels")
    tokens = read_tokens(Path(args.lang_dir) / "tokens.txt")
    panels, shifts = [], []
    for kind, src in sources:
        probs, shift = (posteriors_from_scp(src, args.utt) if kind == "scp"
                        else posteriors_from_model(src, args.data_dir, args.utt))
        if probs.shape[1] != len(tokens):
            raise fail(f"{probs.shape[1]} classes but {args.lang_dir}/tokens.txt has {len(tokens)}", src, args.utt)
        panels.append(probs)
        shifts.append(shift)
    title = args.utt
    if args.data_dir and (Path(args.data_dir) / "text").is_file():
        from asrkt.data.kaldi_dir import read_table

        text = read_table(Path(args.data_dir) / "text", check_sorted=False).get(args.utt)
        if text is not None:
            title = f"{args.utt}: {text}"
    plot(panels, labels, tokens, shifts, title, args.out, args.max_classes)
    logger.info("wrote %s (%d panels, %s frames)", args.out, len(panels), "/".join(str(p.shape[0]) for p in panels))
    return Path(args.out)


if __name__ == "__main__":
    main()
