"""User-facing errors: one clear line naming the file, the utterance and the problem."""
from __future__ import annotations


class AsrktError(Exception):
    """An error caused by bad input or bad configuration, not by a bug.

    Entry points catch it and print ``ERROR: <message>`` on one line, exit 1, no traceback.
    Build the message with :func:`where` so that the file and utterance are always named.
    """


def where(path=None, utt=None, line=None) -> str:
    """Format the location prefix of an error message, e.g. ``data/train/text:12 (utt spk1-a)``."""
    parts = []
    if path is not None:
        parts.append(f"{path}:{line}" if line is not None else str(path))
    if utt is not None:
        parts.append(f"utterance '{utt}'")
    return ", ".join(parts)


def fail(message: str, path=None, utt=None, line=None) -> "AsrktError":
    """Build an AsrktError whose message starts with the location; use as ``raise fail(...)``."""
    loc = where(path, utt, line)
    return AsrktError(f"{loc}: {message}" if loc else message)
