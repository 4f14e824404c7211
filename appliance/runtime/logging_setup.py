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
    if not any(getattr(h, "_smartswitch", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._smartswitch = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    set_level(level)
    return logger


def set_level(level: str) -> None:
    """Change what reaches stderr (a reload calls this).

    The console's event log (appliance.runtime.control.EventLog) records INFO events
    (reloads, back-end changes) whatever stderr shows, so with our stderr
    handler in place the logger itself stays at INFO or below and the level
    is applied on the handler.
    """
    logger = logging.getLogger("smartswitch")
    wanted = logging.getLevelName(level.upper())
    ours = [h for h in logger.handlers if getattr(h, "_smartswitch", False)]
    if not ours:
        logger.setLevel(wanted)
        return
    for h in ours:
        h.setLevel(wanted)
    logger.setLevel(min(wanted, logging.INFO))
