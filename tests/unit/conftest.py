"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class ListHandler(logging.Handler):
    """Keeps each log record as "LEVEL message"."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """What the control plane logs during a test, one "LEVEL message" a line."""
    handler = ListHandler()
    logger = logging.getLogger("smartswitch")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)
