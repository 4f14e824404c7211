"""`smartswitch` subcommands that act on this machine's config and storage: run, check,
provision, verify-index, route, switch-stats.

Exit codes: 0 success; 1 the appliance failed while running, or verify-index
found bad entries; 2 it could not start (bad config, port in use, device
unusable, store in use, data plane not built). Errors an operator can fix are
printed as one line on stderr, never as a traceback (appliance.cli.main).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from appliance import StartError
from appliance.cli.config_file import config_path
from appliance.config import BackendConfig, Config, ConfigError, load_config, summary
from appliance.proxy import ring
from appliance.proxy.routing import build_ring
from appliance.runtime import logging_setup, offline, runner
from appliance.runtime.local_client import first_reply_line, reachable_host
from appliance.runtime.switch import COUNTERS_FILE
from appliance.storage import provision, serving
from dataplane.fastpath import load

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2


def action_check(path: str) -> tuple[Config, str]:
    """Validate a config file; return it and its one-line summary."""
    config = load_config(path)
    return config, summary(config)


def cmd_check(args: argparse.Namespace) -> int:
    """`smartswitch check FILE`: validate without starting anything."""
    path = config_path(args)
    _, line = action_check(path)
    print(f"{path}: ok")
    print(line)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`smartswitch run --config FILE`: serve until SIGTERM/SIGINT."""
    config = load_config(config_path(args))
    provision.served_driver(config).prepare_process(config, args.argv)
    logging_setup.configure(config.logging.level)
    return runner.run(config)


def cmd_verify_index(args: argparse.Namespace) -> int:
    """`smartswitch verify-index --config FILE`: check the index against the device."""
    config = load_config(config_path(args))
    provision.served_driver(config).prepare_process(config, args.argv)
    logging_setup.configure(config.logging.level)
    checked, failed = offline.verify_index(config)
    verdict = "consistent" if failed == 0 else "INCONSISTENT"
    print(f"{config.storage.index_dir}: checked {checked} entries, {failed} failed: {verdict}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def cmd_provision(args: argparse.Namespace) -> int:
    """`smartswitch provision --config FILE [--dry-run]`: lay the pools out on the devices.

    Prints the plan (or "nothing to do"), then applies it unless --dry-run.
    Run it with the appliance stopped; start-up runs the same action.
    """
    config = load_config(config_path(args))
    # Embedded SPDK runs in this process too: its libraries need LD_LIBRARY_PATH.
    provision.served_driver(config).prepare_process(config, args.argv)
    logging_setup.configure(config.logging.level)

    def say(line: str) -> None:
        print(line, flush=True)

    layout = serving.plan_storage(config)
    prefix = "plan (dry run, nothing changed):" if args.dry_run else "plan:"
    print(prefix)
    for line in layout.lines():
        print(f"  {line}")
    if layout.steps and not args.dry_run:
        if layout.shrinks():
            load()  # a shrink opens the store: refuse a stale build before any change
        print("applying:")
        offline.provision_storage(config, layout, say=lambda line: say(f"  {line}"))
        print("done")
    else:
        offline.provision_storage(config, layout, dry_run=True, say=say)
    return EXIT_OK


# memcached's text-protocol key limit (KEY_MAX_LENGTH in memcached.h).
KEY_MAX_LENGTH = 250
ME_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class RouteResult:
    """Where a key goes and whether the running appliance holds it.

    Attributes:
        owner: the back end that owns the key on the primary ring.
        local: "dram" or "device" (the tier holding it), "cached" (held, tier
            not reported), "not cached", or "unknown (why)".
    """

    owner: BackendConfig
    local: str


def action_route(config: Config, key: bytes, timeout: float = ME_TIMEOUT_S) -> RouteResult:
    """The owner of key (through the data plane's own hash and lookup) and its local tier.

    Raises:
        ConfigError: the config has no back ends.
        DataplaneError: the data plane is not built (the hash runs in C).
    """
    if not config.proxy:
        raise ConfigError("missing; route needs a proxy-mode config (one with back ends)",
                          path="backends", file=config.source)
    index = ring.owner(build_ring(config, config.backends), key, config.routing.hash)
    return RouteResult(config.backends[index], local_tier(config, key, timeout))


def local_tier(config: Config, key: bytes, timeout: float = ME_TIMEOUT_S) -> str:
    """Ask the appliance listening where config says whether it holds key (`me`)."""
    mc = config.memcached
    host = reachable_host(mc.listen)
    where = runner.endpoint(host, mc.tcp_port)
    if mc.tcp_port == 0:
        return "unknown (memcached.tcp_port is 0: the running port is not in the config)"
    if not key or len(key) > KEY_MAX_LENGTH or any(b <= 32 or b == 127 for b in key):
        return "unknown (not a memcached text key, so it can't be asked for)"
    try:
        line = first_reply_line(host, mc.tcp_port, b"me " + key + b"\r\n", timeout)
    except OSError:
        return f"unknown (no appliance answering on {where})"
    if line == "EN":
        return "not cached"
    if line.startswith("ME "):
        tiers = [t.split("=", 1)[1] for t in line.split() if t.startswith("tier=")]
        return tiers[0] if tiers else "cached"
    return f"unknown ({where} answered {line[:80]!r})"


def cmd_route(args: argparse.Namespace) -> int:
    """`smartswitch route KEY --config FILE`: the owning back end and the local tier."""
    config = load_config(config_path(args))
    result = action_route(config, os.fsencode(args.key))
    print(f"owner: {result.owner.name} {result.owner.address}")
    print(f"local: {result.local}")
    return EXIT_OK


def action_switch_stats(config: Config) -> dict[str, int]:
    """The running switch's counters, as it last published them (every 0.5 s).

    Raises:
        ConfigError: the config is not in switch mode.
        StartError: no counters there (the appliance is not running in
            switch mode with this storage.dir).
    """
    if not config.dataplane.switch:
        raise ConfigError("expected dpdk; switch-stats reads a switch-mode appliance",
                          path="dataplane.mode", file=config.source)
    path = config.storage.dir / COUNTERS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StartError(f"no switch counters at {path} ({exc}); is the appliance "
                         f"running with this config?") from None


def cmd_switch_stats(args: argparse.Namespace) -> int:
    """`smartswitch switch-stats --config FILE`: per port, rule and function counters."""
    counters = action_switch_stats(load_config(config_path(args)))
    zero = args.all
    for name, value in counters.items():
        if value or zero:
            print(f"{name} {value}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add run, check, provision, verify-index, route and switch-stats to `smartswitch`'s
    parser."""
    run = sub.add_parser("run", help="serve until SIGTERM or SIGINT")
    run.add_argument("--config", metavar="FILE",
                     help="YAML config (default: the embedded configs/default.yaml)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config file without starting")
    check.add_argument("file", nargs="?", metavar="FILE", help="the YAML config")
    check.add_argument("--config", metavar="FILE", help="same as FILE")
    check.set_defaults(func=cmd_check)

    prov = sub.add_parser("provision", help="create or resize the storage devices and pools "
                                            "the config names (appliance stopped)")
    prov.add_argument("--config", metavar="FILE",
                      help="YAML config (default: the embedded configs/default.yaml)")
    prov.add_argument("--dry-run", action="store_true",
                      help="print the plan and change nothing")
    prov.set_defaults(func=cmd_provision)

    verify = sub.add_parser("verify-index",
                            help="check every index entry against the device (store not running)")
    verify.add_argument("--config", metavar="FILE",
                        help="YAML config (default: the embedded configs/default.yaml)")
    verify.set_defaults(func=cmd_verify_index)

    route = sub.add_parser("route", help="which back end owns KEY, and whether the running "
                                         "appliance holds it locally")
    route.add_argument("key", metavar="KEY", help="the key, as clients send it")
    route.add_argument("--config", metavar="FILE",
                       help="YAML config with backends (default: the embedded "
                            "configs/default.yaml)")
    route.set_defaults(func=cmd_route)

    sws = sub.add_parser("switch-stats", help="switch mode: counters per port, rule and "
                                              "function (non-zero ones unless --all)")
    sws.add_argument("--config", metavar="FILE", help="the switch-mode YAML config")
    sws.add_argument("--all", action="store_true", help="also print counters that are 0")
    sws.set_defaults(func=cmd_switch_stats)
