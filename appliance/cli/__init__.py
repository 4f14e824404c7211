"""`smartswitch`: run the appliance, check a config, provision its storage, verify the
index, route a key; act on a running appliance through its REST API.

* ``commands``: the subcommands that act on this machine's config and storage;
* ``console``: the ones that call the running appliance's REST API (/api/v1);
* ``config_file``: which config file a subcommand reads.

``main`` is the entry point of the `smartswitch` console script and of
`python -m appliance`. Exit codes: 0 success; 1 the appliance failed while
running, or verify-index found bad entries; 2 it could not start (bad config,
port in use, device unusable, store in use, data plane not built). Errors an
operator can fix are printed as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from appliance import StartError, __version__
from appliance.cli import commands, console
from appliance.cli.commands import EXIT_CANNOT_START, EXIT_FAILED, EXIT_OK
from appliance.config import ConfigError
from dataplane.fastpath import DataplaneError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_CANNOT_START"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and shell completion)."""
    parser = argparse.ArgumentParser(
        prog="smartswitch",
        description="SmartSwitch: a memcached-compatible endpoint served from its own store.")
    parser.add_argument("--version", action="version", version=f"smartswitch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # run, check, provision, verify-index, route, switch-stats.
    commands.add_parsers(sub)
    # backend, key, objects, stats, flush, apply, events (through the REST API),
    # hash-password.
    console.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `smartswitch` console script and `python -m appliance`."""
    args = build_parser().parse_args(argv)
    # For the device kind's prepare_process (SPDK starts the command again).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CANNOT_START
    except (StartError, DataplaneError) as exc:
        print(f"smartswitch: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        print("smartswitch: interrupted", file=sys.stderr)
        return 130
