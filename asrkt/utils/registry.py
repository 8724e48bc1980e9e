"""Named components chosen in configs (loss terms, epoch hooks): ``{name: <registered name>, <options>}``."""
from __future__ import annotations

from asrkt.utils.errors import AsrktError


def lookup_spec(spec, registry: dict, where: str, what: str) -> tuple[str, type, dict]:
    """``(name, registered class, the spec's other keys)`` of a ``{name: ..., ...}`` spec; AsrktError naming
    ``where`` (the config key) for a malformed spec or an unknown name."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise AsrktError(f"{where}: each {what} is a mapping with a 'name', got {spec!r}")
    rest = dict(spec)
    name = str(rest.pop("name"))
    if name not in registry:
        raise AsrktError(f"{where}: unknown {what} '{name}' (known: {', '.join(sorted(registry)) or 'none'})")
    return name, registry[name], rest
