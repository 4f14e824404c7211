"""Which config file a subcommand reads: the one the operator named, or the embedded default."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.config import ConfigError

# configs/default.yaml is the single source of the embedded default; when
# smartswitch runs from a checkout (or an editable install) it sits here.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def config_path(args: argparse.Namespace) -> str:
    """The config the operator named (FILE or --config), or the embedded default."""
    given = [p for p in (getattr(args, "file", None), args.config) if p]
    if len(given) == 2 and given[0] != given[1]:
        raise ConfigError(f"two config files given ({given[0]} and --config {given[1]}); "
                          f"pass one")
    if given:
        return given[0]
    if not DEFAULT_CONFIG.is_file():
        raise ConfigError("no --config given and the embedded default "
                          f"{DEFAULT_CONFIG} is missing; pass --config FILE")
    return str(DEFAULT_CONFIG)
