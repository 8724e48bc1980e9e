"""File hashes, in one place (model checksums in score.yaml and post_info.yaml, result records)."""
from __future__ import annotations

import hashlib


def file_sha1(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
