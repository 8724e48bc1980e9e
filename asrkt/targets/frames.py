"""The frame-level cross-entropy objective: one class id (an HMM state's pdf id, from a GMM-HMM alignment) per
frame, as Kaldi nnet1 trains its hybrid DNNs.

Targets dir (``--targets-dir``), in Kaldi's forms:

``num_pdfs``  the number of classes (what ``am-info``/``tree-info`` print as "number of pdfs")
``pdf.scp``   int32 vectors keyed by utterance, one pdf id per feature frame, e.g. from
              ``ali-to-pdf final.mdl "ark:gunzip -c ali.*.gz|" ark,scp:pdf.ark,pdf.scp`` over the train and dev sets

A model that subsamples by ``s`` is trained on every ``s``-th frame's label (frames 0, s, 2s, ...), as Kaldi's
chain models do with frame subsampling. The dev metric is the frame error rate.

Decoding (``method: hclg``; the default ``greedy`` selects it too, frame_ce has one decoder) is the hybrid
search of :class:`asrkt.hmm.decode.HybridDecoder`: ``(log-posterior - log-prior) * acoustic_scale`` on HCLG. It
needs, in the targets dir, ``ali_train_pdf.counts`` (priors) and ``hybrid.yaml`` (the GMM system and graph dir,
written by ``python -m asrkt.bin.make_graph``); train_mono + make_graph leave both. The Kaldi wheels are imported
only when such a decoder is built, never by CTC users. Decode a model with ``model.subsampling: 1``: the HMMs
need at least 3 frames per phone.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from asrkt.utils.tables import read_table
from asrkt.targets.objective import Objective, ObjectiveStats, TargetSource, register_objective
from asrkt.utils.errors import AsrktError, fail

PAD = -100  # F.cross_entropy's ignore_index


class FrameTargets(TargetSource):
    """Per-frame class ids of ``utts`` from ``pdf.scp``, checked against ``data_dir/utt2num_frames``."""

    def __init__(self, scp: Path, data_dir, utts: list[str], num_classes: int, subsampling: int):
        super().__init__()
        from asrkt.io import read_int_vectors

        frames_path = Path(data_dir) / "utt2num_frames"
        frames = read_table(frames_path)
        wanted = set(utts)
        for utt, ids in read_int_vectors(f"scp:{scp}"):
            if utt not in wanted:
                continue
            if utt not in frames:
                raise fail("utterance missing (compute features first)", frames_path, utt)
            if len(ids) != int(frames[utt]):
                raise fail(f"{len(ids)} frame labels but the features have {frames[utt]} frames ({frames_path}); "
                           "were the alignments made from other features?", scp, utt)
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
                bad = int(ids.max()) if int(ids.max()) >= num_classes else int(ids.min())
                raise fail(f"class id {bad} outside [0, {num_classes}) (num_pdfs)", scp, utt)
            self.targets[utt] = torch.from_numpy(ids[::subsampling].astype("int64"))
        missing = [u for u in utts if u not in self.targets]
        if missing:
            raise fail(f"no frame labels for {len(missing)} of {len(utts)} utterances (first: '{missing[0]}'); "
                       f"align {data_dir} too", scp, missing[0])

    @staticmethod
    def collate(items: list) -> torch.Tensor:
        return torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=PAD)


@register_objective
class FrameCeObjective(Objective):
    name = "frame_ce"
    hard_term = "ce"
    metric = "fer"
    metric_label = "dev frame error rate (%)"

    @property
    def num_classes(self) -> int:
        path = self._need_targets_dir() / "num_pdfs"
        try:
            n = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise fail(f"expected the number of pdfs ({type(e).__name__})", path) from None
        if n < 2:
            raise fail(f"need at least 2 pdfs, got {n}", path)
        return n

    def target_source(self, data_dir, utts, subsampling: int = 1) -> FrameTargets:
        scp = self._need_targets_dir() / "pdf.scp"
        if not scp.is_file():
            raise fail("missing: frame labels (pdf ids per frame) of the training and dev sets", scp)
        return FrameTargets(scp, data_dir, utts, self.num_classes, subsampling)

    @staticmethod
    def _valid(logits: torch.Tensor, out_lengths, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets cut to the output length, mask of frames with a label inside each output length)."""
        T = min(logits.shape[1], targets.shape[1])
        targets = targets.to(logits.device)[:, :T]
        in_len = torch.arange(T, device=logits.device).unsqueeze(0) < \
            torch.as_tensor(out_lengths, device=logits.device).unsqueeze(1)
        return targets, in_len & (targets != PAD)

    def loss(self, logits, out_lengths, targets, utt_ids=None) -> torch.Tensor:
        labels, valid = self._valid(logits, out_lengths, targets)
        T = labels.shape[1]
        if bool(valid.any()) and int(labels[valid].max()) >= logits.shape[-1]:
            raise AsrktError(f"class id {int(labels[valid].max())} outside a {logits.shape[-1]}-class model")
        self.last_stats = ObjectiveStats(utterances=len(labels), frames=int(valid.sum()), units=int(valid.sum()))
        return F.cross_entropy(logits[:, :T][valid].float(), labels[valid], reduction="sum")

    def errors(self, logits, out_lengths, targets) -> tuple[int, int]:
        labels, valid = self._valid(logits, out_lengths, targets)
        best = logits[:, :labels.shape[1]].argmax(-1)
        return int((best != labels)[valid].sum()), int(valid.sum())

    decoders = ("hclg", "greedy")  # "greedy", DecodeConfig's default, is taken as "hclg"

    def build_decoder(self, cfg):
        """The hybrid WFST decoder over this targets dir (see the module docstring)."""
        if cfg.method not in self.decoders:
            raise AsrktError(f"unknown decoding method '{cfg.method}' for the frame_ce objective (known: hclg)")
        from asrkt.hmm.decode import DecodeOptions, HybridDecoder  # the Kaldi wheels, only here

        opts = DecodeOptions(acoustic_scale=cfg.acoustic_scale, beam=cfg.beam, lattice_beam=cfg.lattice_beam,
                             max_active=cfg.max_active)
        return HybridDecoder(self._need_targets_dir(), opts, num_pdfs=self.num_classes, graph_dir=cfg.graph or None)

    def degenerate(self, logits, out_lengths) -> str | None:
        best = logits.argmax(-1)
        mask = torch.arange(best.shape[1], device=best.device).unsqueeze(0) < \
            torch.as_tensor(out_lengths, device=best.device).unsqueeze(1)
        if best[mask].unique().numel() <= 1:
            return "it predicts a single class on every frame"
        return None
