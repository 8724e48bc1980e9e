"""Kaldi's decision-tree event maps in Python: map, multimap, and Kaldi's binary ``tree`` format.

The wheel (kaldi-hmm-gmm) can use a ``ContextDependency`` but not build one beyond the monophone case, so trees
built here (:mod:`asrkt.hmm.tree_build`) are written in Kaldi's binary format (``src/tree/event-map.cc``,
``context-dep.cc``) and loaded through the wheel's pickle state, which is exactly that byte stream without the
``\\0B`` header.

An *event* is a dict ``{key: value}``: keys ``0 .. N-1`` are the phones of the context window (0: no phone, at
the utterance edges), :data:`PDF_CLASS` (Kaldi's ``kPdfClass`` = -1) is the pdf-class of the HMM state.

Nodes: :class:`Const` (``CE``, a leaf: the pdf id), :class:`Table` (``TE``: a child per value of a key, None
where undefined), :class:`Split` (``SE``: the ``yes`` child when the key's value is in ``yes_set``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError, fail

PDF_CLASS = -1  # Kaldi's kPdfClass


@dataclass
class Const:
    answer: int


@dataclass
class Table:
    key: int
    table: list  # child node or None, indexed by value


@dataclass
class Split:
    key: int
    yes_set: tuple  # sorted values
    yes: object
    no: object


# ---------------------------------------------------------------------------------------------- lookup
def map_event(node, event: dict):
    """Kaldi's ``EventMap::Map``: the answer for ``event``, or None where the map is undefined."""
    while True:
        if isinstance(node, Const):
            return node.answer
        v = event.get(node.key)
        if v is None:
            return None
        if isinstance(node, Table):
            if v < 0 or v >= len(node.table) or node.table[v] is None:
                return None
            node = node.table[v]
        else:
            node = node.yes if v in node.yes_set else node.no


def multimap(node, event: dict) -> set:
    """Kaldi's ``EventMap::MultiMap``: every answer reachable when the keys absent from ``event`` are free."""
    out: set = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None:
            continue
        if isinstance(n, Const):
            out.add(n.answer)
            continue
        v = event.get(n.key)
        if isinstance(n, Table):
            if v is None:
                stack.extend(n.table)
            elif 0 <= v < len(n.table):
                stack.append(n.table[v])
        elif v is None:
            stack += [n.yes, n.no]
        else:
            stack.append(n.yes if v in n.yes_set else n.no)
    return out


def map_leaves(node, fn):
    """A copy of the tree with every leaf answer ``a`` replaced by ``fn(a)``."""
    if node is None:
        return None
    if isinstance(node, Const):
        return Const(int(fn(node.answer)))
    if isinstance(node, Table):
        return Table(node.key, [map_leaves(c, fn) for c in node.table])
    return Split(node.key, node.yes_set, map_leaves(node.yes, fn), map_leaves(node.no, fn))


def leaves(node) -> set:
    return multimap(node, {})


# --------------------------------------------------------------------------------------- Kaldi binary
def _token(t: str) -> bytes:
    return t.encode() + b" "  # WriteToken, binary mode


def _int32(v: int) -> bytes:
    return b"\x04" + struct.pack("<i", int(v))  # WriteBasicType<int32>: size byte, little-endian value


def _uint32(v: int) -> bytes:
    return b"\xfc" + struct.pack("<I", int(v))  # unsigned types write -sizeof as the size byte


def _int_vector(vals) -> bytes:
    vals = [int(v) for v in vals]  # WriteIntegerVector<int32>: size byte, int32 length, raw data
    return b"\x04" + struct.pack("<i", len(vals)) + struct.pack(f"<{len(vals)}i", *vals)


def write_event_map(node) -> bytes:
    if node is None:
        return _token("NULL")
    if isinstance(node, Const):
        return _token("CE") + _int32(node.answer)
    if isinstance(node, Table):
        return (_token("TE") + _int32(node.key) + _uint32(len(node.table)) + _token("(")
                + b"".join(write_event_map(c) for c in node.table) + _token(")"))
    if not node.yes_set or list(node.yes_set) != sorted(set(node.yes_set)):
        raise AsrktError(f"SplitEventMap on key {node.key}: the yes-set must be sorted, unique, non-empty")
    return (_token("SE") + _int32(node.key) + _int_vector(node.yes_set) + _token("{")
            + write_event_map(node.yes) + write_event_map(node.no) + _token("}"))


def context_dependency_bytes(root, N: int, P: int) -> bytes:
    """``ContextDependency::Write`` in binary mode, without the ``\\0B`` file header."""
    if not 0 <= P < N:
        raise AsrktError(f"central position {P} outside the context width {N}")
    return (_token("ContextDependency") + _int32(N) + _int32(P) + _token("ToPdf") + write_event_map(root)
            + _token("EndContextDependency"))


class _Reader:
    def __init__(self, data: bytes, where):
        self.d, self.i, self.where = data, 0, where

    def error(self, what):
        return fail(f"not a Kaldi binary tree: {what} at byte {self.i}", self.where)

    def token(self) -> str:
        j = self.d.find(b" ", self.i)
        if j < 0:
            raise self.error("unterminated token")
        t, self.i = self.d[self.i:j].decode(errors="replace"), j + 1
        return t

    def expect(self, t: str):
        got = self.token()
        if got != t:
            raise self.error(f"expected {t}, got {got!r}")

    def int32(self, unsigned=False) -> int:
        size = self.d[self.i:self.i + 1]
        if size != (b"\xfc" if unsigned else b"\x04"):
            raise self.error("bad integer size byte")
        v = struct.unpack_from("<I" if unsigned else "<i", self.d, self.i + 1)[0]
        self.i += 5
        return v

    def int_vector(self) -> tuple:
        if self.d[self.i:self.i + 1] != b"\x04":
            raise self.error("bad integer-vector size byte")
        n = struct.unpack_from("<i", self.d, self.i + 1)[0]
        vals = struct.unpack_from(f"<{n}i", self.d, self.i + 5)
        self.i += 5 + 4 * n
        return tuple(vals)

    def event_map(self):
        t = self.token()
        if t == "NULL":
            return None
        if t == "CE":
            return Const(self.int32())
        if t == "TE":
            key, size = self.int32(), self.int32(unsigned=True)
            self.expect("(")
            table = [self.event_map() for _ in range(size)]
            self.expect(")")
            return Table(key, table)
        if t == "SE":
            key, yes_set = self.int32(), self.int_vector()
            self.expect("{")
            yes, no = self.event_map(), self.event_map()
            self.expect("}")
            return Split(key, yes_set, yes, no)
        raise self.error(f"unknown event-map token {t!r}")


def parse_context_dependency(data: bytes, where=None) -> tuple:
    """(root, N, P) of a binary ContextDependency (with or without the ``\\0B`` header)."""
    if data[:2] == b"\x00B":
        data = data[2:]
    r = _Reader(data, where)
    r.expect("ContextDependency")
    N, P = r.int32(), r.int32()
    r.expect("ToPdf")
    root = r.event_map()
    r.expect("EndContextDependency")
    return root, N, P


def read_tree(path) -> tuple:
    """(root, N, P) of a Kaldi binary ``tree`` file (e.g. what ``ContextDependency.write`` wrote)."""
    path = Path(path)
    if not path.is_file():
        raise fail("missing: the tree", path)
    return parse_context_dependency(path.read_bytes(), path)


def write_tree(root, N: int, P: int, path) -> Path:
    """Kaldi's binary ``tree`` file, written atomically."""
    from asrkt.utils.atomic import atomic_open

    with atomic_open(path, "wb") as f:
        f.write(b"\x00B" + context_dependency_bytes(root, N, P))
    return Path(path)


def to_context_dependency(root, N: int, P: int):
    """The wheel's ``khg.ContextDependency`` of the tree (through its pickle state: the binary bytes)."""
    from asrkt.hmm.kaldi import khg

    data = context_dependency_bytes(root, N, P)
    cd = khg.ContextDependency.__new__(khg.ContextDependency)
    cd.__setstate__((np.frombuffer(data, dtype=np.int8).tolist(),))
    return cd


def from_context_dependency(cd) -> tuple:
    """(root, N, P) of a wheel ``ContextDependency`` (the inverse of :func:`to_context_dependency`)."""
    data = np.asarray(cd.__getstate__()[0], dtype=np.int8).tobytes()
    return parse_context_dependency(data, "ContextDependency")
