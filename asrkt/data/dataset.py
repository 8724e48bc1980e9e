"""Utterance dataset over a Kaldi data dir, frame-budget length bucketing, and padding collate.

Features come from ``feats.scp`` with per-speaker CMVN (``cmvn.scp``) applied when they are loaded; by default
every utterance is loaded and normalised once and kept in memory (AN4's fbank is ~100 MB), so an epoch costs
no I/O. Everything else an utterance carries (the objective's targets, teacher posteriors) comes from sources
attached with :meth:`UtteranceDataset.add_source`, so the dataset knows nothing of objectives or methods.

Batches hold at most ``max_frames`` padded frames (batch size x longest utterance): utterances are sorted by
length (optionally with a per-epoch random jitter, so batches differ between epochs) and cut greedily, then
the batch order is shuffled with a seed derived from the global seed and the epoch.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from asrkt.data.kaldi_dir import c_sorted, read_table
from asrkt.utils.seed import derive_seed
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Utterance:
    utt: str
    feats: torch.Tensor  # (T, D) float32, CMVN applied
    inputs: dict = dataclasses.field(default_factory=dict)  # source name -> this utterance's item


class UtteranceDataset(torch.utils.data.Dataset):
    """The utterances of ``data_dir`` that have features (all of ``feats.scp``, C-sorted).

    ``in_memory``: load and normalise all features once (default); else read them on every access.
    ``cmvn``: apply per-speaker CMVN from ``cmvn.scp`` (``norm_vars`` as Kaldi's apply-cmvn).
    Per-utterance inputs besides the features (hard targets, teacher posteriors, ...) are attached with
    :meth:`add_source`: an object with ``source[utt]`` and ``source.collate(list of items)``.
    """

    def __init__(self, data_dir, in_memory: bool = True, cmvn: bool = True, norm_vars: bool = False):
        from asrkt.io import load_scp

        self.data_dir = Path(data_dir)
        self.feats_scp_path = self.data_dir / "feats.scp"
        if not self.feats_scp_path.is_file():
            raise fail("missing: compute features first (stage 1)", self.feats_scp_path)
        self.utts = c_sorted(read_table(self.feats_scp_path, check_sorted=False))
        if not self.utts:
            raise fail("no utterances", self.feats_scp_path)
        self._scp = load_scp(self.feats_scp_path)
        if cmvn:
            from asrkt.features.cmvn import CmvnApplier

            self._cmvn = CmvnApplier(self.data_dir, norm_vars=norm_vars)
        else:
            self._cmvn = None
        self.in_memory = in_memory
        self.sources: dict[str, object] = {}

        self._feats: list[torch.Tensor] | None = None
        if in_memory:
            self._feats = [self._load(u) for u in self.utts]
            self.num_frames = [int(f.shape[0]) for f in self._feats]
            self.feat_dim = int(self._feats[0].shape[1])
        else:
            self.num_frames = self._frames_from_table()
            self.feat_dim = int(self._load(self.utts[0]).shape[1])

    def add_source(self, name: str, source) -> None:
        """Attach ``source[utt]`` to every item as ``inputs[name]``, batched by ``source.collate``."""
        self.sources[name] = source

    def _frames_from_table(self) -> list[int]:
        path = self.data_dir / "utt2num_frames"
        if path.is_file():
            table = read_table(path)
            if all(u in table for u in self.utts):
                return [int(table[u]) for u in self.utts]
        return [int(np.asarray(self._scp[u]).shape[0]) for u in self.utts]

    def _load(self, utt: str) -> torch.Tensor:
        try:
            feats = np.asarray(self._scp[utt])
        except (OSError, ValueError, KeyError) as e:
            raise fail(f"cannot read features: {e}", self.feats_scp_path, utt) from None
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise fail(f"expected a (frames > 0, dim) feature matrix, got shape {feats.shape}", self.feats_scp_path,
                       utt)
        if self._cmvn is not None:
            feats = self._cmvn(utt, feats)
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.utts)

    def feats(self, i: int) -> torch.Tensor:
        if self._feats is not None:
            return self._feats[i]
        feats = self._load(self.utts[i])
        if feats.shape[1] != self.feat_dim:
            raise fail(f"feature dimension {feats.shape[1]} differs from {self.feat_dim}", self.feats_scp_path,
                       self.utts[i])
        return feats

    def __getitem__(self, i: int) -> Utterance:
        utt = self.utts[i]
        return Utterance(utt=utt, feats=self.feats(i), inputs={name: src[utt] for name, src in self.sources.items()})

    def collate(self, items: list[Utterance]) -> "Batch":
        """Pad a list of utterances into a :class:`Batch`, each source batched by its own ``collate``."""
        feats = [it.feats for it in items]
        return Batch(utts=[it.utt for it in items], feats=pad_sequence(feats, batch_first=True),
                     lengths=torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
                     inputs={name: src.collate([it.inputs[name] for it in items])
                             for name, src in self.sources.items()})

    def frame_counts(self) -> dict[str, int]:
        return dict(zip(self.utts, self.num_frames))


class FrameBatchSampler(torch.utils.data.Sampler):
    """Batches of utterance indices with at most ``max_frames`` padded frames (and ``max_utts`` utterances,
    0 = no limit). An utterance longer than ``max_frames`` gets a batch of its own.

    ``shuffle``: shuffle the batch order every epoch (seed from ``seed`` and the epoch: :meth:`set_epoch`);
    ``length_jitter``: with shuffling, sort by length x (1 + U(-j, j)) so batch composition varies too.
    """

    def __init__(self, lengths, max_frames: int, max_utts: int = 0, shuffle: bool = True, seed: int = 0,
                 length_jitter: float = 0.0):
        if max_frames < 1:
            raise AsrktError(f"batch.max_frames must be >= 1, got {max_frames}")
        if max_utts < 0 or length_jitter < 0:
            raise AsrktError(f"batch.max_utts and batch.length_jitter must be >= 0, got {max_utts}, {length_jitter}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_frames, self.max_utts = int(max_frames), int(max_utts)
        self.shuffle, self.seed, self.length_jitter = shuffle, seed, float(length_jitter)
        self.epoch = 0
        self._batches: list[list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = None

    def batches(self) -> list[list[int]]:
        if self._batches is None:
            self._batches = self._make_batches()
        return self._batches

    def _make_batches(self) -> list[list[int]]:
        rng = np.random.default_rng(derive_seed(self.seed, "batches", self.epoch))
        keys = self.lengths.astype(np.float64)
        if self.shuffle and self.length_jitter > 0:
            keys = keys * (1.0 + rng.uniform(-self.length_jitter, self.length_jitter, size=keys.size))
        order = np.argsort(keys, kind="stable")
        batches, batch, longest = [], [], 0
        for i in order.tolist():
            n = int(self.lengths[i])
            new_longest = max(longest, n)
            if batch and ((len(batch) + 1) * new_longest > self.max_frames
                          or (self.max_utts and len(batch) >= self.max_utts)):
                batches.append(batch)
                batch, new_longest = [], n
            batch.append(i)
            longest = new_longest
        if batch:
            batches.append(batch)
        if self.shuffle:
            perm = rng.permutation(len(batches))
            batches = [batches[j] for j in perm]
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class ShardedBatchSampler(torch.utils.data.Sampler):
    """One rank's share of every batch of ``base`` (distributed training): utterances ``rank, rank + world, ...``
    of each global batch (as ESPnet's ``batch[rank::world_size]``; the batch is sorted by length, so the shares
    are balanced). Every rank builds the same global batches (same seed), so together they cover each batch
    exactly once and take the same number of steps.

    A batch with fewer utterances than ranks gives the ranks left over its first utterance as a stand-in
    (:meth:`is_standin`): it keeps them in step with the others (DDP needs a backward pass from every rank) and
    the trainer gives it no weight, where ESPnet refuses such a batch.
    """

    def __init__(self, base: FrameBatchSampler, rank: int, world: int):
        if world < 1 or not 0 <= rank < world:
            raise AsrktError(f"rank {rank} must lie in [0, world size {world})")
        self.base, self.rank, self.world = base, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def is_standin(self, i: int) -> bool:
        """Whether this rank's part of batch ``i`` is a stand-in (the batch has no utterance for this rank)."""
        return len(self.base.batches()[i]) <= self.rank

    def __iter__(self):
        for batch in self.base.batches():
            yield batch[self.rank::self.world] or batch[:1]

    def __len__(self) -> int:
        return len(self.base)


@dataclasses.dataclass
class Batch:
    """A padded batch: features (B, T, D), lengths, and ``inputs`` (source name -> batched items: the
    objective's targets, teacher posteriors, ...)."""

    utts: list[str]
    feats: torch.Tensor  # (B, T, D)
    lengths: torch.Tensor  # (B,) int64
    inputs: dict = dataclasses.field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def nonfinite_utts(self) -> list[str]:
        """The utterances whose features hold NaN or inf."""
        return [u for u, f, n in zip(self.utts, self.feats, self.lengths.tolist())
                if not bool(torch.isfinite(f[:n]).all())]

    def to(self, device, non_blocking: bool = True) -> "Batch":
        def move(x):
            if isinstance(x, torch.Tensor) or hasattr(x, "to"):
                return x.to(device, non_blocking=non_blocking)
            return x

        return Batch(utts=self.utts, feats=move(self.feats), lengths=move(self.lengths),
                     inputs={k: move(v) for k, v in self.inputs.items()})


def make_loader(dataset: UtteranceDataset, sampler: FrameBatchSampler, pin_memory: bool = False):
    """A single-process DataLoader over ``sampler``'s batches (features are in memory: workers would only
    add copying on these small machines). Pinning is left to :meth:`Batch.to` (non-blocking copies)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate, num_workers=0)
