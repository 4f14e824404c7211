"""The appliance's log format: one line per event on stderr.

Integration tests and operators grep these lines (the `ready tcp=...` line in
particular), so the format is fixed here and nowhere else.
"""

import logging
import sys

LOG_FORMAT = "%(asctime)s smartswitch %(levelname)s %(message)s"


def configure(level: str) -> logging.Logger:
    """Send the `smartswitch` logger to stderr at level (debug/info/warning/error).

    Idempotent: calling it again only changes the level.
    """
    logger = logging.getLogger("smartswitch")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_smartswitch", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._smartswitch = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    return logger
