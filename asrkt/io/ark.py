"""Kaldi archives of matrices and vectors: read (ark, scp, pipes, stdin) and write (ark, ark+scp, text).

Reading parses the archive framing and the uncompressed types (FM, FV, DM, DV, int32 vectors, text) here, with a
length check on every read, because kaldiio silently returns a short vector for a truncated file; compressed
matrices (CM, CM2, CM3) are decoded by kaldiio once their exact byte count has been read. Every error is an
AsrktError naming the file, the byte position and the utterance.

Writing uses kaldiio's ``write_array`` / ``write_array_ascii`` for the object bytes (so compression is Kaldi's),
under temporary names that are renamed on success; script (.scp) entries point at the FINAL archive name.

dtypes: float32 and float64 arrays keep their type (CMVN statistics stay double, as Kaldi's); anything else
(float16, ints, torch tensors of any type) is written as float32 unless ``dtype`` says otherwise.
"""
from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from kaldiio.matio import _convert_to_slice, read_matrix_or_vector, write_array, write_array_ascii

from asrkt.io.scp import parse_scp_lines, read_scp
from asrkt.io.specifiers import parse_rspecifier, parse_wspecifier
from asrkt.io.streams import CorruptData, Input, Output, TempOutputWriter, open_input
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

_SPACE = b" \t\n\r"
_BINARY_TYPES = {"FM": ("<f4", 2), "FV": ("<f4", 1), "DM": ("<f8", 2), "DV": ("<f8", 1)}
_COMPRESSED = ("CM", "CM2", "CM3")


# ----------------------------------------------------------------------------------------------------- reading
def _read_int32(inp: Input, what: str) -> int:
    marker = inp.exact(1, what)
    if marker != b"\4":
        raise CorruptData(f"bad {what} at byte {inp.pos - 1}: expected an int32 size marker, got {marker!r}")
    value = struct.unpack("<i", inp.exact(4, what))[0]
    if value < 0:
        raise CorruptData(f"negative {what} ({value}) at byte {inp.pos - 4}")
    return value


def _read_type_token(inp: Input) -> str:
    token = b""
    while True:
        c = inp.exact(1, "object type")
        if c == b" ":
            break
        token += c
        if len(token) > 4:
            raise CorruptData(f"unknown binary object type starting {token!r} at byte {inp.pos - len(token)}")
    return token.decode("ascii", errors="replace")


def _read_binary(inp: Input) -> np.ndarray:
    if inp.peek(1) == b"\4":  # Kaldi vector<int32> (e.g. alignments): each element has its own size byte
        n = _read_int32(inp, "vector length")
        raw = inp.exact(5 * n, f"int32 vector of length {n}")
        data = np.frombuffer(raw, dtype=np.dtype([("size", "u1"), ("value", "<i4")]))
        if n and not np.all(data["size"] == 4):
            raise CorruptData("bad int32 vector element size marker")
        return data["value"].astype(np.int32)
    start = inp.pos
    typ = _read_type_token(inp)
    if typ in _BINARY_TYPES:
        dtype, ndim = _BINARY_TYPES[typ]
        if ndim == 2:
            rows = _read_int32(inp, "number of rows")
            cols = _read_int32(inp, "number of columns")
            shape = (rows, cols)
        else:
            shape = (_read_int32(inp, "vector length"),)
        return inp.read_array(dtype, shape, f"{typ} data of shape {shape}")
    if typ in _COMPRESSED:
        header = inp.exact(16, f"{typ} compressed-matrix header")
        rows, cols = struct.unpack("<ii", header[8:])
        if rows < 0 or cols < 0:
            raise CorruptData(f"bad {typ} header at byte {start}: {rows} x {cols}")
        size = {"CM": 8 * cols + rows * cols, "CM2": 2 * rows * cols, "CM3": rows * cols}[typ]
        body = inp.exact(size, f"{typ} compressed data of shape ({rows}, {cols})")
        blob = io.BytesIO(b"\0B" + typ.encode() + b" " + header + body)
        return np.array(read_matrix_or_vector(blob), dtype=np.float32)  # np.array: a writable copy
    raise CorruptData(f"unsupported object type '{typ}' at byte {start}: expected a matrix or vector "
                      "(FM, FV, DM, DV, CM, CM2, CM3)")


def _parse_numbers(text: str, dtype, what: str) -> np.ndarray:
    try:
        return np.array(text.split(), dtype=np.float64).astype(dtype)
    except ValueError:
        bad = next(t for t in text.split() if not _is_number(t))
        raise CorruptData(f"{what}: '{bad}' is not a number") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text(inp: Input) -> np.ndarray:
    """Kaldi text form: ``[ 1 2 ]`` vector, ``[\\n  1 2 \\n  3 4 ]`` matrix, or ``1 2 3`` int32 vector line."""
    c = inp.read(1)
    while c in (b" ", b"\t"):
        c = inp.read(1)
    if not c:
        raise CorruptData(f"unexpected end of file at byte {inp.pos}: no object after the key")
    start = inp.pos - 1
    if c != b"[":
        inp.unread(c)
        line = _read_until(inp, b"\n", "int32 vector text line", allow_eof=True)
        try:
            return np.array(line.decode("ascii").split(), dtype=np.int64).astype(np.int32)
        except (UnicodeDecodeError, ValueError):
            raise CorruptData(f"object at byte {start} is neither binary nor Kaldi text") from None
    body = _read_until(inp, b"]", "text matrix (no closing ']')", allow_eof=False)
    if inp.peek(1) == b"\r":
        inp.read(1)
    if inp.peek(1) == b"\n":
        inp.read(1)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptData(f"text matrix at byte {start} has non-ASCII bytes") from None
    if "\n" not in text:
        return _parse_numbers(text, np.float32, f"text vector at byte {start}")
    rows = [line.split() for line in text.split("\n") if line.strip()]
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise CorruptData(f"text matrix at byte {start} has rows of different lengths {sorted(widths)}")
    flat = _parse_numbers(" ".join(" ".join(r) for r in rows), np.float32, f"text matrix at byte {start}")
    return flat.reshape(len(rows), widths.pop() if rows else 0)


def _read_until(inp: Input, delim: bytes, what: str, allow_eof: bool) -> bytes:
    """Bytes up to (excluding) ``delim``, which is consumed; reads in chunks and pushes back the excess."""
    parts = []
    while True:
        chunk = inp.read_some()
        if not chunk:
            if allow_eof:
                return b"".join(parts)
            raise CorruptData(f"unexpected end of file while reading {what} at byte {inp.pos}")
        i = chunk.find(delim)
        if i >= 0:
            parts.append(chunk[:i])
            inp.unread(chunk[i + 1:])
            return b"".join(parts)
        parts.append(chunk)


def read_object(inp: Input) -> np.ndarray:
    """One matrix or vector (binary ``\\0B...`` or text) at the current position."""
    if inp.peek(2) == b"\0B":
        inp.read(2)
        return _read_binary(inp)
    return _read_text(inp)


def _read_key(inp: Input) -> str | None:
    c = inp.read(1)
    while c and c in _SPACE:
        c = inp.read(1)
    if not c:
        return None
    start = inp.pos - 1
    key = bytearray()
    while c and c not in _SPACE:
        key += c
        c = inp.read(1)
        if len(key) > 4096:
            raise CorruptData(f"no space after a key starting at byte {start} (not a Kaldi archive?)")
    if c != b" ":
        k = key.decode("utf-8", errors="replace")
        raise CorruptData(f"unexpected {'end of file' if not c else repr(c.decode('latin-1'))} after key "
                          f"'{k}' at byte {inp.pos}: expected a space and an object (truncated?)")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptData(f"key at byte {start} is not valid UTF-8") from None


def _iter_ark(inp: Input, permissive: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    seen = set()
    key = None
    while True:
        try:
            key = _read_key(inp)
            if key is None:
                return
            if key in seen:
                raise fail("duplicate key in archive", path=inp.name, utt=key)
            seen.add(key)
            value = read_object(inp)
        except CorruptData as e:
            err = fail(f"{e} (truncated or corrupt archive?)", path=inp.name, utt=key)
            if permissive:
                logger.warning("%s; stopping (permissive read)", err)
                return
            raise err from None
        yield key, value


def _as_slices(value: str, where: str):
    """Split ``ark:offset[rows]`` / ``[rows,cols]`` (Kaldi ranges, inclusive) into (target, offset, slices)."""
    target, slices = value.strip(), None
    if target.endswith("|"):
        return target, None, None
    if target.endswith("]") and "[" in target:
        target, rng = target[:-1].rsplit("[", 1)
        try:
            slices = _convert_to_slice(rng.strip())
        except (ValueError, RuntimeError):
            raise AsrktError(f"{where}: bad range '[{rng}]' (expected [r1:r2] or [r1:r2,c1:c2])") from None
    offset = None
    if ":" in target:
        head, tail = target.rsplit(":", 1)
        if tail.isdigit():
            target, offset = head, int(tail)
    return target, offset, slices


class _EntryLoader:
    """Loads scp entries, keeping the last archive open (sequential reads of one shard stay cheap)."""

    def __init__(self):
        self._path = None
        self._file = None

    def close(self):
        if self._file is not None:
            self._file.close()
        self._path = self._file = None

    def load(self, key: str, value: str, where: str) -> np.ndarray:
        target, offset, slices = _as_slices(value, where)
        label = f"{target}" + (f" at byte offset {offset}" if offset is not None else "")
        try:
            if target.endswith("|"):
                with open_input(target, "archive") as inp:
                    array = read_object(inp)
            else:
                if self._path != target:
                    self.close()
                    p = Path(target)
                    if not p.is_file():
                        raise AsrktError(f"{target}: archive not found (utterance '{key}', from {where})")
                    self._file, self._path = open(p, "rb"), target
                inp = Input(self._file, target)
                if offset is not None:
                    self._file.seek(0, 2)
                    size = self._file.tell()
                    if offset >= size:
                        raise CorruptData(f"offset {offset} is past the end of the file ({size} bytes)")
                inp.seek(offset or 0)
                array = read_object(inp)
        except CorruptData as e:
            raise AsrktError(f"{label}, utterance '{key}' (from {where}): {e} "
                             "(truncated or corrupt archive, or a stale .scp?)") from None
        if slices is not None:
            # numpy would silently clip a range that runs past the end; Kaldi refuses it, and so do we.
            if len(slices) > array.ndim or any(
                    sl.stop is not None and not (0 <= (sl.start or 0) < sl.stop <= n)
                    for sl, n in zip(slices, array.shape)):
                raise AsrktError(f"{where}, utterance '{key}': range in '{value}' does not fit the object's "
                                 f"shape {array.shape}")
            array = array[slices]
        return array


def read_matrices(rspecifier: str) -> Iterator[tuple[str, np.ndarray]]:
    """Iterate ``(key, array)`` over an rspecifier: ``ark:f``, ``scp:f``, ``ark:-``, ``ark:cmd |``, ``scp:cmd |``.

    Matrices are 2-D, vectors 1-D; float32 (FM, CM*, text), float64 (DM, DV) or int32 (int vectors).
    """
    spec = parse_rspecifier(rspecifier)
    if spec.kind == "ark":
        with open_input(spec.target, "archive") as inp:
            yield from _iter_ark(inp, permissive=spec.permissive)
        return
    if spec.is_file:
        entries = read_scp(spec.target, check_sorted=False)
    else:
        with open_input(spec.target, "script") as inp:
            entries = parse_scp_lines(inp.read_all(), inp.name)
    name = "stdin" if spec.is_stdin else spec.target
    loader = _EntryLoader()
    try:
        for lineno, (key, value) in enumerate(entries.items(), 1):
            try:
                array = loader.load(key, value, f"{name}:{lineno}")
            except AsrktError as e:
                if spec.permissive:
                    logger.warning("%s; skipped (permissive read)", e)
                    continue
                raise
            yield key, array
    finally:
        loader.close()


class MatrixScp(Mapping):
    """Lazy ``key -> np.ndarray`` over a script file; each access opens, seeks and reads one object.

    No file handle is kept between accesses: DataLoader workers fork, and a shared handle would share its offset.
    ``entry(key)`` gives the raw ``ark:offset`` string.
    """

    def __init__(self, path, entries: dict[str, str]):
        self.path = Path(path)
        self._entries = entries
        self._line = {k: i for i, k in enumerate(entries, 1)}

    def __getitem__(self, key: str) -> np.ndarray:
        value = self._entries[key]
        loader = _EntryLoader()
        try:
            return loader.load(key, value, f"{self.path}:{self._line[key]}")
        finally:
            loader.close()

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


def load_scp(path) -> MatrixScp:
    """A lazy mapping ``key -> array`` over a script file (checked now: UTF-8, one entry a line, no duplicates,
    well-formed ranges; errors name file:line). Arrays are read on access."""
    entries = read_scp(path, check_sorted=False)
    for lineno, (key, value) in enumerate(entries.items(), 1):
        _as_slices(value, f"{path}:{lineno}")
    return MatrixScp(path, entries)


# ----------------------------------------------------------------------------------------------------- writing
def check_key(key, where, seen: set) -> None:
    """Keys are non-empty, whitespace-free strings, unique within one output."""
    if not isinstance(key, str) or not key or any(c.isspace() for c in key):
        raise fail(f"bad key {key!r}: keys must be non-empty strings without whitespace", path=where)
    if key in seen:
        raise fail("duplicate key: written twice to the same output", path=where, utt=key)
    seen.add(key)


def _to_numpy(array, dtype, where, key) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim not in (1, 2):
        raise fail(f"can only write matrices (2-D) and vectors (1-D), got shape {array.shape}", path=where,
                   utt=key)
    if dtype is not None:
        target = np.dtype(dtype)
    elif array.dtype in (np.float32, np.float64):
        target = array.dtype
    else:
        target = np.dtype(np.float32)
    if target not in (np.float32, np.float64):
        raise fail(f"dtype must be float32 or float64, got {target}", path=where)
    return np.ascontiguousarray(array, dtype=target)


class MatrixWriter(TempOutputWriter):
    """Write matrices/vectors to a wspecifier (``ark:a.ark``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:| cmd``).

    >>> with MatrixWriter("ark,scp:feats.ark,feats.scp") as w:
    ...     w.write("utt1", np.zeros((10, 40), np.float32))

    Files are written under temporary names and renamed when the ``with`` block succeeds; on an exception
    both are removed and any earlier output stays untouched. ``compression`` is a Kaldi compression method
    (1 auto, 2 speech-feature, 3 two-byte auto, ..., 7 one-byte 0..1; ``None`` = none) applied to matrices.
    """

    def __init__(self, wspecifier: str, compression: int | None = None, dtype=None):
        self.spec = parse_wspecifier(wspecifier)
        if compression is not None and not (isinstance(compression, int) and 1 <= compression <= 7):
            raise AsrktError(f"compression must be None or a Kaldi compression method 1..7, got {compression!r}")
        self.compression = compression
        self.dtype = dtype
        self.num_written = 0
        self._keys: set[str] = set()
        self._closed = False
        self._ark = self._scp = None
        self._ark = Output(self.spec.ark)
        try:
            if self.spec.scp is not None:
                self._scp = Output(self.spec.scp)
        except BaseException:
            self._ark.abort()
            raise

    def write(self, key: str, array) -> None:
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        check_key(key, self.spec.ark, self._keys)
        array = _to_numpy(array, self.dtype, self.spec.ark, key)
        if array.ndim == 2 and array.size == 0 and array.shape != (0, 0):
            # Kaldi's Matrix cannot be 0 x D (its reader fails on it); Kaldi itself writes every empty matrix 0 x 0.
            logger.warning("%s: utterance '%s': empty %s matrix written as 0 x 0, as Kaldi does", self.spec.ark,
                           key, array.shape)
            array = array.reshape(0, 0)
        # Serialise first, then one write: a dead output command is reported with its exit status.
        buf = io.BytesIO()
        buf.write(key.encode("utf-8") + b" ")
        offset_in_object = buf.tell()
        if self.spec.text:
            write_array_ascii(buf, array)
        else:
            # Vectors and empty matrices are stored uncompressed (kaldiio cannot compress them).
            compress = self.compression if array.ndim == 2 and array.size else None
            write_array(buf, array, compression_method=compress)
        f = self._ark.f
        if self._scp is not None:
            offset = f.tell() + offset_in_object
        self._ark.write(buf.getvalue())
        if self._scp is not None:
            self._scp.write(f"{key} {self.spec.ark}:{offset}\n".encode("utf-8"))
        if self.spec.flush:
            f.flush()
            if self._scp is not None:
                self._scp.f.flush()
        self.num_written += 1

    def close(self) -> None:
        """Finish: rename the archive, then the script, to their final names."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ark.commit()
        except BaseException:
            self._ark.abort()
            if self._scp is not None:
                self._scp.abort()
            raise
        if self._scp is not None:
            self._scp.commit()

    def abort(self) -> None:
        """Give up: remove the temporary files (nothing under the final names changes)."""
        if self._closed:
            return
        self._closed = True
        for out in (self._ark, self._scp):
            if out is not None:
                out.abort()



def write_matrices(wspecifier: str, items, compression: int | None = None, dtype=None) -> int:
    """Write ``items`` (a dict or an iterable of ``(key, array)``) to ``wspecifier``; returns the count."""
    if isinstance(items, Mapping):
        items = items.items()
    with MatrixWriter(wspecifier, compression=compression, dtype=dtype) as w:
        for key, array in items:
            w.write(key, array)
    return w.num_written
