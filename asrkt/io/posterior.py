"""Kaldi's Posterior type (per frame a list of ``(class-id, weight)`` pairs) through kaldi_native_io.

This is the sparse top-k form of teacher posteriors that Kaldi nnet1 can train on directly
(``nnet-train-frmshuff --targets=ark:post.ark``). The dense form (frames x classes matrices) goes through
:mod:`asrkt.io.ark`.

kaldi_native_io writes to the names it is given, so :class:`PosteriorWriter` hands it temporary names and, on
success, renames the archive and rewrites the script so its entries name the FINAL archive (offsets unchanged).
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import kaldi_native_io as kni
import numpy as np

from asrkt.io.ark import check_key
from asrkt.io.scp import read_scp
from asrkt.io.specifiers import parse_rspecifier, parse_wspecifier
from asrkt.io.streams import Output, TempOutputWriter
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

Posterior = list[list[tuple[int, float]]]


def _kaldi_message(e: Exception) -> str:
    """The useful last line of a kaldi_native_io exception (the first lines are C++ source locations)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[-1] if lines else repr(e)
    return msg[4:] if msg.startswith("[E] ") else msg


class _SequentialReader(kni.SequentialPosteriorReader):
    # kni's __del__ fails noisily when the constructor raised (no _impl yet).
    def close(self):
        if getattr(self, "_impl", None) is not None and self._impl.is_open:
            return self._impl.close()
        return True


class _RandomAccessReader(kni.RandomAccessPosteriorReader):
    def close(self):
        if getattr(self, "_impl", None) is not None and self._impl.is_open:
            return self._impl.close()
        return True


class _Writer(kni.PosteriorWriter):
    def close(self):
        if getattr(self, "_impl", None) is not None and self._impl.is_open:
            return self._impl.close()
        return True


def _check_readable(spec) -> None:
    if spec.is_file:
        p = Path(spec.target)
        if not p.is_file():
            raise fail(f"{'archive' if spec.kind == 'ark' else 'script'} not found", p)
        if spec.kind == "scp":
            read_scp(p, check_sorted=False)  # our file:line messages for a bad script


def read_posteriors(rspecifier: str) -> Iterator[tuple[str, Posterior]]:
    """Iterate ``(key, posterior)`` over a Posterior rspecifier (``ark:``, ``scp:``, pipes, stdin).

    A truncated or corrupt archive is an AsrktError naming the rspecifier and the last good utterance.
    """
    spec = parse_rspecifier(rspecifier)
    _check_readable(spec)
    try:
        reader = _SequentialReader(spec.spec)
    except RuntimeError as e:
        raise fail(f"cannot open for reading posteriors: {_kaldi_message(e)}", path=spec.spec) from None
    last = None
    finished = False
    try:
        while True:
            try:
                if reader.done:
                    break
                key, value = reader.key, reader.value
            except RuntimeError as e:
                raise fail(f"error reading posteriors after utterance '{last}': {_kaldi_message(e)}",
                           path=spec.spec) from None
            yield key, value
            last = key
            try:
                reader.next()
            except RuntimeError as e:
                raise fail(f"error reading posteriors after utterance '{last}': {_kaldi_message(e)}",
                           path=spec.spec) from None
        finished = True
    finally:
        ok = reader.close()
    if finished and not ok:
        after = f"after utterance '{last}'" if last is not None else "before the first utterance"
        raise fail(f"error reading posteriors {after}: truncated or corrupt archive, or a failed command "
                   "(see the messages above)", path=spec.spec)


class PosteriorScp(Mapping):
    """Lazy random access ``key -> posterior`` over a Posterior script file.

    The kaldi_native_io reader is opened on first access and reopened in a forked process (DataLoader workers),
    because an inherited file handle would share its offset with the parent.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._entries = read_scp(self.path, check_sorted=False)
        self._reader = None
        self._pid = None

    def _get_reader(self):
        if self._reader is None or self._pid != os.getpid():
            try:
                self._reader = _RandomAccessReader(f"scp:{self.path}")
            except RuntimeError as e:
                raise fail(f"cannot open: {_kaldi_message(e)}", path=self.path) from None
            self._pid = os.getpid()
        return self._reader

    def __getitem__(self, key: str) -> Posterior:
        if key not in self._entries:
            raise KeyError(key)
        try:
            return self._get_reader()[key]
        except RuntimeError as e:
            raise fail(f"cannot read posterior ({self._entries[key]}): {_kaldi_message(e)}", path=self.path,
                       utt=key) from None

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries


def load_posterior_scp(path) -> PosteriorScp:
    """A lazy mapping ``key -> posterior`` over a Posterior .scp (checked now, read on access)."""
    return PosteriorScp(path)


def _as_posterior(post, where, key) -> Posterior:
    try:
        return [[(int(i), float(w)) for i, w in frame] for frame in post]
    except (TypeError, ValueError) as e:
        raise fail(f"posterior must be a list (frames) of lists of (class-id, weight) pairs: {e}", path=where,
                   utt=key) from None


class PosteriorWriter(TempOutputWriter):
    """Write Kaldi Posteriors to a wspecifier (``ark:p.ark``, ``ark,scp:p.ark,p.scp``, ``ark,t:-``, ``ark:| cmd``).

    A context manager like :class:`asrkt.io.ark.MatrixWriter`: temporary names, renamed on success, removed on
    an exception (an older output is left untouched).
    """

    def __init__(self, wspecifier: str):
        self.spec = parse_wspecifier(wspecifier)
        self.num_written = 0
        self._keys: set[str] = set()
        self._closed = False
        self._ark = Output(self.spec.ark, open_file=False)
        self._scp_out = None
        self._scp_tmp = None
        opts = "ark" + (",t" if self.spec.text else "") + (",f" if self.spec.flush else "")
        try:
            if self.spec.scp is not None:
                # kaldi_native_io writes the script next to the archive; we rewrite it into the real target.
                folder = self._ark.tmp_path.parent if self._ark.tmp_path is not None else None
                fd, tmp = tempfile.mkstemp(prefix=".post_scp.", suffix=".tmp", dir=folder)
                os.close(fd)
                self._scp_tmp = Path(tmp)
                kaldi_spec = f"{opts},scp:{self._ark.write_target},{self._scp_tmp}"
            else:
                kaldi_spec = f"{opts}:{self._ark.write_target}"
            self._writer = _Writer(kaldi_spec)
        except RuntimeError as e:
            self._cleanup()
            raise fail(f"cannot open for writing posteriors: {_kaldi_message(e)}", path=self.spec.spec) from None
        except BaseException:
            self._cleanup()
            raise

    def _cleanup(self) -> None:
        self._ark.abort()
        if self._scp_tmp is not None and self._scp_tmp.exists():
            self._scp_tmp.unlink()

    def write(self, key: str, posterior) -> None:
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        check_key(key, self.spec.ark, self._keys)
        post = _as_posterior(posterior, self.spec.ark, key)
        try:
            self._writer.write(key, post)
        except RuntimeError as e:
            raise fail(f"cannot write posterior: {_kaldi_message(e)}", path=self.spec.ark, utt=key) from None
        self.num_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self._writer.close():
                raise fail("error closing the posterior archive (disk full, or a failed output command?)",
                           path=self.spec.spec)
            self._ark.commit()
            if self._scp_tmp is not None:
                self._write_final_scp()
        except BaseException:
            self._cleanup()
            raise
        if self._scp_tmp is not None and self._scp_tmp.exists():
            self._scp_tmp.unlink()

    def _write_final_scp(self) -> None:
        out = Output(self.spec.scp)
        try:
            tmp_ark = self._ark.write_target
            with open(self._scp_tmp, encoding="utf-8") as f:
                for line in f:
                    key, value = line.rstrip("\n").split(" ", 1)
                    ark, offset = value.rsplit(":", 1)
                    if ark != tmp_ark:  # would mean kaldi_native_io changed its script format
                        raise AsrktError(f"{self._scp_tmp}: unexpected script entry '{line.strip()}'")
                    out.f.write(f"{key} {self.spec.ark}:{offset}\n".encode("utf-8"))
            out.commit()
        except BaseException:
            out.abort()
            raise

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            self._cleanup()



def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def topk_to_posterior(indices, values) -> Posterior:
    """Top-k ``indices`` (T, k) and probabilities ``values`` (T, k) -> Posterior, dropping padding
    (weight 0, -inf or NaN, or a negative index). Values must be probabilities, not log-probabilities."""
    idx = _numpy(indices)
    val = _numpy(values).astype(np.float64)
    if idx.shape != val.shape or idx.ndim != 2:
        raise AsrktError(f"topk_to_posterior: indices {idx.shape} and values {val.shape} must both be (T, k)")
    if not np.issubdtype(idx.dtype, np.integer):
        raise AsrktError(f"topk_to_posterior: indices must be integers, got {idx.dtype}")
    finite = np.isfinite(val)
    if np.any(val[finite] < 0) or np.any(val[finite] > 1 + 1e-4):
        raise AsrktError("topk_to_posterior: values must be probabilities in [0, 1] "
                         f"(got min {val[finite].min():.4g}, max {val[finite].max():.4g}); "
                         "for log-probabilities pass exp(values)")
    keep = finite & (val > 0) & (idx >= 0)
    return [[(int(i), float(w)) for i, w, k in zip(ri, rv, rk) if k] for ri, rv, rk in zip(idx, val, keep)]


def posterior_to_topk(post, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior -> (indices int64 (T, k), weights float32 (T, k)): per frame the k largest weights in
    descending order, padded with index 0 and weight 0.0."""
    if k < 1:
        raise AsrktError(f"posterior_to_topk: k must be >= 1, got {k}")
    T = len(post)
    indices = np.zeros((T, k), dtype=np.int64)
    weights = np.zeros((T, k), dtype=np.float32)
    for t, frame in enumerate(post):
        if len(frame) > k:
            frame = sorted(frame, key=lambda p: -p[1])[:k]
        elif len(frame) > 1:
            frame = sorted(frame, key=lambda p: -p[1])
        for j, (i, w) in enumerate(frame):
            if isinstance(w, float) and math.isnan(w):
                raise AsrktError(f"posterior_to_topk: NaN weight at frame {t}")
            indices[t, j] = i
            weights[t, j] = w
    return indices, weights
