"""Kaldi tables of matrices and vectors through kaldi-native-io: float/double matrices (also compressed, also
text), float/double vectors and int32 vectors (alignments, pdf-id targets).

Kaldi tables are typed. A reader's type comes from the first object of the archive (or of the script's first
entry), peeked at here: FM, CM, CM2, CM3 and text matrices read as float32 matrices, DM as float64 (CMVN
statistics stay double), FV/DV as float32/float64 vectors, int32 vectors as int32. A pipe or stdin cannot be
peeked at: it reads as float32 matrices, as Kaldi's copy-feats does (:func:`read_int_vectors`,
:func:`read_vectors` or ``dtype=np.float64`` for others). Script entries are read one by one
(``FloatMatrix.read("a.ark:123[0:9]")``), so an error names the script line.

Writers choose their kni writer at the first object: float32 stays float, float64 stays double, anything else
(float16, ints, torch tensors) is written as float32 unless ``dtype`` says otherwise; later objects are cast to
that type. Matrices and vectors cannot share an archive (a Kaldi table holds one type).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import kaldi_native_io as kni
import numpy as np

from asrkt.io.kaldi import KaldiFailure, Source, TableWriter, check_key, iter_table, kaldi_call
from asrkt.io.scp import parse_scp_lines, read_scp
from asrkt.io.specifiers import parse_rspecifier
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

# kind -> (sequential reader, one-object read of an rxfilename, numpy conversion of a reader's value)
_KINDS = {
    "float32": (kni.SequentialFloatMatrixReader, kni.FloatMatrix.read),
    "float64": (kni.SequentialDoubleMatrixReader, kni.DoubleMatrix.read),
    "float32 vector": (kni.SequentialFloatVectorReader, kni.FloatVector.read),
    "float64 vector": (kni.SequentialDoubleVectorReader, kni.DoubleVector.read),
    "int32 vector": (kni.SequentialInt32VectorReader, kni.read_int32_vector),
}
_TOKENS = {b"FM": "float32", b"CM": "float32", b"CM2": "float32", b"CM3": "float32", b"DM": "float64",
           b"FV": "float32 vector", b"DV": "float64 vector"}
_ENTRY = re.compile(r"^(?P<path>.*?)(?::(?P<offset>\d+))?(?P<range>\[[^\]]*\])?$")
_RANGE = re.compile(r"^\[\s*(?:(\d+)\s*:\s*(\d+))?\s*(?:,\s*(\d+)\s*:\s*(\d+))?\s*\]$")


def _as_numpy(value) -> np.ndarray:
    """kni's value -> a writable array of its own (a sequential reader reuses its buffer; int32 vectors are lists;
    a one-object read returns a kni object that the array view keeps alive)."""
    if isinstance(value, list):
        return np.array(value, dtype=np.int32)
    return np.array(value) if isinstance(value, np.ndarray) else value.numpy()


def _kind_of(head: bytes) -> str | None:
    """The kind of the object whose bytes start ``head`` (after its key), or None if unsure."""
    if head.startswith(b"\0B"):
        return "int32 vector" if head[2:3] == b"\4" else _TOKENS.get(head[2:].split(b" ", 1)[0])
    text = head.lstrip(b" \t")
    if text.startswith(b"["):
        return "float32" if text[1:].lstrip(b" \t")[:1] in (b"\n", b"\r", b"]") else "float32 vector"
    return "int32 vector" if text[:1].isdigit() or text[:1] == b"-" else None


def _peek(path: str, offset: int | None, keyed: bool) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(offset or 0)
            head = f.read(4096 if keyed else 64)
    except OSError:
        return None  # the read itself will say what is wrong
    if keyed:  # an archive: skip the first key
        head = head.lstrip()
        head = head[head.find(b" ") + 1:] if b" " in head else b""
    return _kind_of(head[:64])


def _entry_kind(value: str) -> str | None:
    m = _ENTRY.match(value.strip())
    if value.strip().endswith("|") or not m:
        return None
    return _peek(m["path"], int(m["offset"]) if m["offset"] else None, keyed=False)


def _check_range(value: str, where: str) -> tuple | None:
    m = _ENTRY.match(value.strip())
    if m is None or not m["range"]:
        return None
    r = _RANGE.match(m["range"])
    if r is None or not any(r.groups()) or any(
            a is not None and int(a) > int(b) for a, b in (r.groups()[:2], r.groups()[2:])):
        raise AsrktError(f"{where}: bad range '{m['range']}' (expected [r1:r2] or [r1:r2,c1:c2])")
    return tuple(None if g is None else int(g) for g in r.groups())


def _read_entry(kind: str, key: str, value: str, where: str) -> np.ndarray:
    """One script entry (``a.ark:123``, ``a.ark:123[0:9]``, ``file``, ``cmd |``), errors naming ``where``."""
    rng = _check_range(value, where)
    try:
        array = _as_numpy(kaldi_call(_KINDS[kind][1], value, warn=rng is None)[0])
    except KaldiFailure as e:
        m = _ENTRY.match(value.strip())
        if m and not value.strip().endswith("|"):
            path = Path(m["path"])
            if not path.is_file():
                raise AsrktError(f"{path}: archive not found (utterance '{key}', from {where})") from None
            size = path.stat().st_size
            if m["offset"] and int(m["offset"]) >= size:
                raise fail(f"offset {m['offset']} is past the end of {path} ({size} bytes): a stale .scp?", where,
                           utt=key) from None
        raise fail(f"cannot read {kind} '{value}': {e} (truncated or corrupt archive, or a stale .scp?)", where,
                   utt=key) from None
    if rng is not None:  # kni clips a range that runs past the end (with a warning); Kaldi refuses it, we too
        r1, r2, c1, c2 = rng
        want = (None if r1 is None else r2 - r1 + 1, None if c1 is None else c2 - c1 + 1)
        if any(w is not None and w != g for w, g in zip(want, array.shape + (None,))):
            m = _ENTRY.match(value.strip())
            whole = m["path"] + (f":{m['offset']}" if m["offset"] else "")
            shape = _as_numpy(kaldi_call(_KINDS[kind][1], whole)[0]).shape
            raise fail(f"range in '{value}' does not fit the object's shape {shape}", where, utt=key)
    return array


def _table_kind(spec, dtype) -> str:
    if dtype is not None:
        kind = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}.get(np.dtype(dtype))
        if kind is None:
            raise AsrktError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        return kind
    if spec.is_file and spec.kind == "ark":
        return _peek(spec.target, 0, keyed=True) or "float32"
    return "float32"


def _read(rspecifier: str, kind: str | None, dtype=None) -> Iterator[tuple[str, np.ndarray]]:
    spec = parse_rspecifier(rspecifier)
    if spec.kind == "ark":
        kind = kind or _table_kind(spec, dtype)
        yield from iter_table(_KINDS[kind][0], spec, convert=_as_numpy, what=f"{kind} objects")
        return
    if spec.is_file:
        entries = read_scp(spec.target, check_sorted=False)
        name = spec.target
    else:
        src = Source(spec.target, "script")
        data = src.read_all()
        src.finish()
        name = src.name
        entries = parse_scp_lines(data, name)
    for lineno, (key, value) in enumerate(entries.items(), 1):
        if kind is None:
            kind = _table_kind(spec, dtype) if dtype is not None else (_entry_kind(value) or "float32")
        try:
            array = _read_entry(kind, key, value, f"{name}:{lineno}")
        except AsrktError as e:
            if spec.permissive:
                logger.warning("%s; skipped (permissive read)", e)
                continue
            raise
        yield key, array


def read_matrices(rspecifier: str, dtype=None) -> Iterator[tuple[str, np.ndarray]]:
    """Iterate ``(key, array)`` over an rspecifier: ``ark:f``, ``scp:f``, ``ark:-``, ``ark:cmd |``, ``scp:cmd |``.

    The table's type is peeked at (see the module doc); ``dtype`` float32/float64 forces matrices of that type.
    """
    return _read(rspecifier, None, dtype)


def read_vectors(rspecifier: str, dtype=np.float32) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, 1-D float array)`` over a table of float or double vectors (Kaldi converts between them)."""
    return _read(rspecifier, "float64 vector" if np.dtype(dtype) == np.float64 else "float32 vector")


def read_int_vectors(rspecifier: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, 1-D int32 array)`` over a table of Kaldi int32 vectors (alignments, pdf-id targets)."""
    return _read(rspecifier, "int32 vector")


class MatrixScp(Mapping):
    """Lazy ``key -> np.ndarray`` over a script file; each access reads one object (no handle is kept, so
    forked DataLoader workers are safe). ``entry(key)`` gives the raw ``ark:offset`` string."""

    def __init__(self, path, entries: dict[str, str], kind: str | None = None):
        self.path = Path(path)
        self._entries = entries
        self._line = {k: i for i, k in enumerate(entries, 1)}
        self._kind = kind

    def __getitem__(self, key: str) -> np.ndarray:
        value = self._entries[key]
        if self._kind is None:
            self._kind = _entry_kind(next(iter(self._entries.values()))) or "float32"
        return _read_entry(self._kind, key, value, f"{self.path}:{self._line[key]}")

    def entry(self, key: str) -> str:
        return self._entries[key]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"MatrixScp({str(self.path)!r}, {len(self)} keys)"


def load_scp(path, kind: str | None = None) -> MatrixScp:
    """A lazy mapping ``key -> array`` over a script file (checked now: UTF-8, one entry a line, no duplicates,
    well-formed ranges; errors name file:line). Arrays are read on access."""
    entries = read_scp(path, check_sorted=False)
    for lineno, value in enumerate(entries.values(), 1):
        _check_range(value, f"{path}:{lineno}")
    return MatrixScp(path, entries, kind)


def load_int_vector_scp(path) -> MatrixScp:
    """A lazy mapping ``key -> int32 vector`` over a script of Kaldi int32 vectors."""
    return load_scp(path, kind="int32 vector")


# ----------------------------------------------------------------------------------------------------- writing
def _to_numpy(array, dtype, where, key) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim not in (1, 2):
        raise fail(f"can only write matrices (2-D) and vectors (1-D), got shape {array.shape}", path=where,
                   utt=key)
    target = np.dtype(dtype) if dtype is not None else (
        array.dtype if array.dtype in (np.float32, np.float64) else np.dtype(np.float32))
    if target not in (np.float32, np.float64):
        raise fail(f"dtype must be float32 or float64, got {target}", path=where)
    return np.ascontiguousarray(array, dtype=target)


_WRITERS = {(2, "float32"): kni.FloatMatrixWriter, (2, "float64"): kni.DoubleMatrixWriter,
            (1, "float32"): kni.FloatVectorWriter, (1, "float64"): kni.DoubleVectorWriter}


class MatrixWriter(TableWriter):
    """Write matrices or vectors to a wspecifier (``ark:a.ark``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:| cmd``).

    >>> with MatrixWriter("ark,scp:feats.ark,feats.scp") as w:
    ...     w.write("utt1", np.zeros((10, 40), np.float32))

    ``compression`` is a Kaldi compression method for matrices (1 auto, 2 speech-feature, 3 two-byte auto, ...,
    7 one-byte 0..1; ``None`` = none).
    """

    _default_cls = kni.FloatMatrixWriter

    def __init__(self, wspecifier: str, compression: int | None = None, dtype=None):
        if compression is not None and not (isinstance(compression, int) and 1 <= compression <= 7):
            raise AsrktError(f"compression must be None or a Kaldi compression method 1..7, got {compression!r}")
        super().__init__(wspecifier)
        self.compression = compression
        self.dtype = dtype
        self._type = None

    def write(self, key: str, array) -> None:
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        check_key(key, self.spec.ark, self._keys)
        array = _to_numpy(array, self.dtype, self.spec.ark, key)
        if array.ndim == 2 and array.size == 0:
            if array.shape != (0, 0):  # Kaldi has no 0 x D matrix and writes every empty one as 0 x 0
                logger.warning("%s: utterance '%s': empty %s matrix written as 0 x 0, as Kaldi does",
                               self.spec.ark, key, array.shape)
            array = array.reshape(0, 0)
        if self._type is None:
            self._type = (array.ndim, str(array.dtype))
            self._open(kni.CompressedMatrixWriter if self.compression and array.ndim == 2 else _WRITERS[self._type])
        elif array.ndim != self._type[0]:
            what = {1: "vector", 2: "matrix"}
            raise fail(f"cannot write a {what[array.ndim]} to an archive of {what[self._type[0]]} objects (a Kaldi "
                       "table holds one type)", path=self.spec.ark, utt=key)
        array = array.astype(self._type[1], copy=False)
        if self.compression and array.ndim == 2:
            self._put(key, array, kni.CompressionMethod(self.compression))
        else:
            self._put(key, array)


def write_matrices(wspecifier: str, items, compression: int | None = None, dtype=None) -> int:
    """Write ``items`` (a dict or an iterable of ``(key, array)``) to ``wspecifier``; returns the count."""
    if isinstance(items, Mapping):
        items = items.items()
    with MatrixWriter(wspecifier, compression=compression, dtype=dtype) as w:
        for key, array in items:
            w.write(key, array)
    return w.num_written


class IntVectorWriter(TableWriter):
    """Write Kaldi int32 vectors (alignments, pdf-id targets); a context manager like :class:`MatrixWriter`."""

    _default_cls = kni.Int32VectorWriter

    def write(self, key: str, vector) -> None:
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        check_key(key, self.spec.ark, self._keys)
        if hasattr(vector, "detach"):
            vector = vector.detach().cpu().numpy()
        v = np.asarray(vector)
        if v.ndim != 1 or not (np.issubdtype(v.dtype, np.integer) or v.size == 0):
            raise fail(f"an int32 vector must be 1-D integers, got shape {v.shape} dtype {v.dtype}",
                       path=self.spec.ark, utt=key)
        if v.size and (v.min() < -2**31 or v.max() >= 2**31):
            raise fail("value out of the int32 range", path=self.spec.ark, utt=key)
        if self._writer is None:
            self._open(kni.Int32VectorWriter)
        self._put(key, v.astype(np.int64).tolist())


def write_int_vectors(wspecifier: str, items) -> int:
    """Write ``items`` (a dict or an iterable of ``(key, int vector)``); returns the count."""
    if isinstance(items, Mapping):
        items = items.items()
    with IntVectorWriter(wspecifier) as w:
        for key, v in items:
            w.write(key, v)
    return w.num_written
