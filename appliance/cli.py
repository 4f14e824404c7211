"""`smartswitch`: run the appliance, check a config, verify the index.

Exit codes: 0 success; 1 the appliance failed while running, or verify-index
found bad entries; 2 it could not start (bad config, port in use, device
unusable, store in use, data plane not built). Errors an operator can fix are
printed as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance import __version__, logging_setup, runner
from appliance.config import Config, ConfigError, load_config, summary
from dataplane.fastpath import DataplaneError

# configs/default.yaml is the single source of the embedded default; when
# smartswitch runs from a checkout (or an editable install) it sits here.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2


def _config_path(args: argparse.Namespace) -> str:
    """The config the operator named, or the embedded default."""
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


def action_check(path: str) -> tuple[Config, str]:
    """Validate a config file; return it and its one-line summary."""
    config = load_config(path)
    return config, summary(config)


def cmd_check(args: argparse.Namespace) -> int:
    """`smartswitch check FILE`: validate without starting anything."""
    path = _config_path(args)
    _, line = action_check(path)
    print(f"{path}: ok")
    print(line)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`smartswitch run --config FILE`: serve until SIGTERM/SIGINT."""
    config = load_config(_config_path(args))
    logging_setup.configure(config.logging.level)
    return runner.run(config)


def cmd_verify_index(args: argparse.Namespace) -> int:
    """`smartswitch verify-index --config FILE`: check the index against the device."""
    config = load_config(_config_path(args))
    logging_setup.configure(config.logging.level)
    checked, failed = runner.verify_index(config)
    verdict = "consistent" if failed == 0 else "INCONSISTENT"
    print(f"{config.storage.index_dir}: checked {checked} entries, {failed} failed: {verdict}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and shell completion)."""
    parser = argparse.ArgumentParser(
        prog="smartswitch",
        description="SmartSwitch: a memcached-compatible endpoint served from its own store.")
    parser.add_argument("--version", action="version", version=f"smartswitch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve until SIGTERM or SIGINT")
    run.add_argument("--config", metavar="FILE",
                     help="YAML config (default: the embedded configs/default.yaml)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config file without starting")
    check.add_argument("file", nargs="?", metavar="FILE", help="the YAML config")
    check.add_argument("--config", metavar="FILE", help="same as FILE")
    check.set_defaults(func=cmd_check)

    verify = sub.add_parser("verify-index",
                            help="check every index entry against the device (store not running)")
    verify.add_argument("--config", metavar="FILE",
                        help="YAML config (default: the embedded configs/default.yaml)")
    verify.set_defaults(func=cmd_verify_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `smartswitch` console script and `python -m appliance`."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CANNOT_START
    except (runner.StartError, DataplaneError) as exc:
        print(f"smartswitch: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        print("smartswitch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
