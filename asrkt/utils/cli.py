"""Entry-point wrapper: user errors become one ``ERROR:`` line and exit status 1, never a traceback."""
from __future__ import annotations

import functools
import logging
import sys

from asrkt.utils.atomic import write_failure
from asrkt.utils.errors import AsrktError


def main_wrapper(main):
    """Decorate a ``main(argv=None)`` so that an AsrktError prints one clear line and exits 1."""

    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except AsrktError as e:
            logging.getLogger(main.__module__).debug("failed", exc_info=True)
            print(f"ERROR: {e}", file=sys.stderr)
            sys.exit(1)
        except OSError as e:
            reason = write_failure(e)
            if reason is None:
                raise
            logging.getLogger(main.__module__).debug("failed", exc_info=True)
            print(f"ERROR: {e.filename or 'an output file'}: {reason} while writing (free some space and rerun)",
                  file=sys.stderr)
            sys.exit(1)

    return wrapped
