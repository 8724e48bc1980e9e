"""Kaldi rspecifiers and wspecifiers (``ark:f``, ``scp:f``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:cmd |``).

The grammar follows Kaldi's ``ClassifyRspecifier``/``ClassifyWspecifier`` (util/kaldi-table.cc): comma-separated
options before the first colon, the filename(s) after it. For ``ark,scp`` the first filename is always the archive,
whatever the order of the options, as in Kaldi. Reading pipes end with ``|``, writing pipes start with ``|``,
``-`` is stdin/stdout. Anything else Kaldi would reject is an AsrktError that quotes the specifier.
"""
from __future__ import annotations

import dataclasses

from asrkt.utils.errors import AsrktError

# Reading options (Kaldi): o/no once, s/ns sorted, cs/ncs called in sorted order, p/np permissive,
# b/t are accepted and ignored (the format is detected per object), bg = read ahead in a thread.
_READ_FLAGS = {"o": ("once", True), "no": ("once", False), "s": ("sorted", True), "ns": ("sorted", False),
               "cs": ("called_sorted", True), "ncs": ("called_sorted", False),
               "p": ("permissive", True), "np": ("permissive", False), "bg": ("background", True),
               "b": (None, None), "t": (None, None)}
# Writing options (Kaldi): t/b text or binary, f/nf flush after every object, p permissive.
_WRITE_FLAGS = {"t": ("text", True), "b": ("text", False), "f": ("flush", True), "nf": ("flush", False),
                "p": ("permissive", True)}


@dataclasses.dataclass(frozen=True)
class RSpecifier:
    """A parsed rspecifier. ``target`` is a path, ``-`` (stdin) or a command ending in ``|``."""

    kind: str  # "ark" or "scp"
    target: str
    once: bool = False
    sorted: bool = False
    called_sorted: bool = False
    permissive: bool = False
    background: bool = False
    spec: str = ""  # the original string, for messages and for kaldi_native_io

    @property
    def is_pipe(self) -> bool:
        return self.target.endswith("|")

    @property
    def is_stdin(self) -> bool:
        return self.target == "-"

    @property
    def is_file(self) -> bool:
        return not (self.is_pipe or self.is_stdin)

    @property
    def command(self) -> str:
        """The shell command of a pipe (without the ``|``)."""
        return self.target[:-1].strip()


@dataclasses.dataclass(frozen=True)
class WSpecifier:
    """A parsed wspecifier: archive and/or script targets (path, ``-`` or a command starting with ``|``)."""

    ark: str | None
    scp: str | None
    text: bool = False
    flush: bool = False
    permissive: bool = False
    spec: str = ""

    @staticmethod
    def _is_file(target: str | None) -> bool:
        return target is not None and target != "-" and not target.startswith("|")

    @property
    def ark_is_file(self) -> bool:
        return self._is_file(self.ark)

    @property
    def scp_is_file(self) -> bool:
        return self._is_file(self.scp)


def _split(spec: str, what: str) -> tuple[list[str], str]:
    if not isinstance(spec, str):
        raise AsrktError(f"{what} must be a string, got {type(spec).__name__}: {spec!r}")
    if ":" not in spec:
        raise AsrktError(f"malformed {what} '{spec}': expected 'ark:FILE', 'scp:FILE' or 'ark,scp:A.ark,A.scp'")
    head, target = spec.split(":", 1)
    options = [o.strip() for o in head.split(",")]
    if any(o == "" for o in options):
        raise AsrktError(f"malformed {what} '{spec}': empty option before ':'")
    return options, target.strip()


def parse_rspecifier(spec: str) -> RSpecifier:
    """Parse a Kaldi rspecifier, e.g. ``ark:feats.ark``, ``scp:feats.scp``, ``ark,s,cs:-``, ``ark:gunzip -c x |``."""
    options, target = _split(spec, "rspecifier")
    flags = {}
    for o in options:
        if o in ("ark", "scp"):
            continue
        if o not in _READ_FLAGS:
            raise AsrktError(f"malformed rspecifier '{spec}': unknown option '{o}' "
                             f"(known: ark, scp, {', '.join(sorted(_READ_FLAGS))})")
        name, value = _READ_FLAGS[o]
        if name is not None:
            flags[name] = value
    kinds = [o for o in options if o in ("ark", "scp")]
    if len(kinds) != 1:
        raise AsrktError(f"malformed rspecifier '{spec}': need exactly one of 'ark' or 'scp' before ':'")
    if not target:
        raise AsrktError(f"malformed rspecifier '{spec}': no file name after ':'")
    if target.startswith("|"):
        raise AsrktError(f"malformed rspecifier '{spec}': a reading pipe ends with '|' ('cmd |'), "
                         "'| cmd' is for writing")
    if target.endswith("|") and not target[:-1].strip():
        raise AsrktError(f"malformed rspecifier '{spec}': empty command before '|'")
    return RSpecifier(kind=kinds[0], target=target, spec=spec, **flags)


def parse_wspecifier(spec: str) -> WSpecifier:
    """Parse a Kaldi wspecifier, e.g. ``ark:a.ark``, ``ark,scp:a.ark,a.scp``, ``ark,t:-``, ``ark:| gzip -c > a.gz``."""
    options, target = _split(spec, "wspecifier")
    flags = {}
    for o in options:
        if o in ("ark", "scp"):
            continue
        if o not in _WRITE_FLAGS:
            raise AsrktError(f"malformed wspecifier '{spec}': unknown option '{o}' "
                             f"(known: ark, scp, {', '.join(sorted(_WRITE_FLAGS))})")
        name, value = _WRITE_FLAGS[o]
        flags[name] = value
    kinds = [o for o in options if o in ("ark", "scp")]
    if not kinds or len(kinds) != len(set(kinds)):
        raise AsrktError(f"malformed wspecifier '{spec}': need 'ark', or 'ark,scp' before ':'")
    if set(kinds) == {"ark", "scp"}:
        if "," not in target:
            raise AsrktError(f"malformed wspecifier '{spec}': 'ark,scp' needs two file names, 'A.ark,A.scp'")
        ark, scp = (t.strip() for t in target.split(",", 1))
        if not ark or not scp:
            raise AsrktError(f"malformed wspecifier '{spec}': empty archive or script file name")
        if ark == "-" or ark.startswith("|"):
            raise AsrktError(f"malformed wspecifier '{spec}': a script (.scp) needs the archive to be a "
                             "file (it records byte offsets), not stdout or a pipe")
    elif kinds == ["ark"]:
        ark, scp = target, None
        if not ark:
            raise AsrktError(f"malformed wspecifier '{spec}': no file name after ':'")
    else:
        raise AsrktError(f"unsupported wspecifier '{spec}': writing only a script is not supported, "
                         "use 'ark,scp:A.ark,A.scp'")
    for t in (ark, scp):
        if t is not None and t.endswith("|"):
            raise AsrktError(f"malformed wspecifier '{spec}': a writing pipe starts with '|' ('| cmd'), "
                             "'cmd |' is for reading")
        if t is not None and t.startswith("|") and not t[1:].strip():
            raise AsrktError(f"malformed wspecifier '{spec}': empty command after '|'")
    return WSpecifier(ark=ark, scp=scp, spec=spec, **flags)
