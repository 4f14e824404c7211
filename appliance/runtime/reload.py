"""Reloading the config while serving: what may change live, and the applier.

Pure parts (unit-tested without a data plane):

* ``refused_change(old, new)``: the first setting that can't change while
  running (listen address, ports, workers, storage other than pool and
  device sizes, the mode), or None.
* Pool sizes may grow live: ``Reloader`` plans provisioning for the new
  config (appliance.storage.provision), refuses any shrink (that needs the
  appliance stopped), extends the device, rewrites the label and grows the
  served pool with Dataplane.grow_pool, without a restart.
* ``describe_changes(old, new)``: what a reload changes, one line each.
* The routing table itself is appliance.proxy.routing's ``routing_settings``.

The applier, ``Reloader``, installs the table at start and on SIGHUP (or
when the console calls ``reload(path)``): read and validate the file, refuse
what can't change live, rebuild the rings, and swap the table in with one
ss_dataplane_set_routing() call: C publishes it atomically and no client
connection is dropped. A back end whose name, host and port are unchanged
keeps its state (down stays down until probed, ejected stays ejected). A
refused reload is logged with its ConfigError and the last good config keeps
running.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config, ConfigError, parse_config
from appliance.config.yaml_source import load_yaml
from appliance.proxy import ring
from appliance.proxy.health import HealthMonitor
from appliance.proxy.routing import routing_settings
from appliance.runtime import logging_setup
from appliance.storage import provision
from dataplane.fastpath import DataplaneError

log = logging.getLogger("smartswitch")


# ------------------------------------------------------------------ pure

# Sections whose settings are bound when the data plane is created.
# The objects listener, its store and buckets are set up once at start.
FIXED_SECTIONS = ("memcached", "storage", "objects")
# The console's server is bound at start; its auth and session_ttl apply live.
CONSOLE_FIXED = ("enabled", "listen")


def _first_difference(old: Any, new: Any, path: str) -> tuple[str, Any, Any] | None:
    """The YAML path of the first field that differs, with both values."""
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        for f in dataclasses.fields(old):
            found = _first_difference(getattr(old, f.name), getattr(new, f.name),
                                      f"{path}.{f.name}")
            if found:
                return found
        return None
    if isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return f"{len(value)} entries"
    return "null" if value is None else str(value)


# Storage settings that may change while serving: capacity (a grow is
# applied live; a shrink is refused by the provisioning plan).
LIVE_POOL_FIELDS = ("size", "size_percent", "allow_shrink")
LIVE_DEVICE_FIELDS = ("size",)


def _fixed_storage(storage: Any) -> Any:
    """storage with the live-changeable capacity fields blanked, for comparison."""
    pools = tuple(dataclasses.replace(p, **{f: None for f in LIVE_POOL_FIELDS})
                  for p in storage.pools)
    devices = tuple(dataclasses.replace(d, **{f: None for f in LIVE_DEVICE_FIELDS})
                    for d in storage.devices)
    return dataclasses.replace(storage, pools=pools, devices=devices)


def refused_change(old: Config, new: Config) -> ConfigError | None:
    """Why new can't replace old while running, or None when it can.

    The error names the first fixed setting that changed (its YAML path and,
    when the file is known, its line in new's text is added by the caller).
    Pool and device sizes are not fixed: the provisioning plan decides.
    """
    for name in FIXED_SECTIONS:
        a, b = getattr(old, name), getattr(new, name)
        if name == "storage":
            a, b = _fixed_storage(a), _fixed_storage(b)
        found = _first_difference(a, b, name)
        if found:
            path, a, b = found
            return ConfigError(f"can't change while running ({_show(a)} -> {_show(b)}); "
                               f"restart smartswitch to apply it", path=path)
    for name in CONSOLE_FIXED:
        a, b = getattr(old.console, name), getattr(new.console, name)
        if name == "listen":
            a, b = old.console.address, new.console.address
        if a != b:
            return ConfigError(f"can't change while running ({_show(a)} -> {_show(b)}); "
                               f"restart smartswitch to apply it", path=f"console.{name}")
    if old.proxy != new.proxy:
        what = "proxy mode to standalone" if old.proxy else "standalone to proxy mode"
        return ConfigError(f"switching from {what} needs a restart (the local store "
                           f"changes role)", path="backends")
    return None


def describe_changes(old: Config, new: Config) -> list[str]:
    """What replacing old by new changes, one short line per change."""
    out = []
    before = {b.name: b for b in old.all_backends}
    after = {b.name: b for b in new.all_backends}
    for name, b in after.items():
        if name not in before:
            out.append(f"back end {name} {b.address} added")
            continue
        a = before[name]
        for f in dataclasses.fields(b):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if va != vb:
                out.append(f"back end {name}: {f.name} {_show(va)} -> {_show(vb)}")
    out += [f"back end {name} {b.address} removed" for name, b in before.items()
            if name not in after]
    old_pools = [(p.name, tuple(b.name for b in p.backends)) for p in old.spare_pools]
    new_pools = [(p.name, tuple(b.name for b in p.backends)) for p in new.spare_pools]
    if old_pools != new_pools:
        out.append("spare_pools: " + (", ".join(f"{n} ({', '.join(m)})" for n, m in new_pools)
                                      or "none"))
    if old.console.auth != new.console.auth:
        out.append("console.auth: password or tokens changed")
    if old.console.session_ttl != new.console.session_ttl:
        out.append(f"console.session_ttl: {old.console.session_ttl} ms -> "
                   f"{new.console.session_ttl} ms")
    for section in ("routing", "backend_defaults", "logging"):
        found_all = _differences(getattr(old, section), getattr(new, section), section)
        out += [f"{p}: {_show(a)} -> {_show(b)}" for p, a, b in found_all]
    return out


def _differences(old: Any, new: Any, path: str) -> list[tuple[str, Any, Any]]:
    return [(f"{path}.{f.name}", getattr(old, f.name), getattr(new, f.name))
            for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def line_in(text: str, path: str) -> int | None:
    """The line of a YAML path (``storage.pools[0].size``) in text, or its parent's."""
    try:
        root = load_yaml(text)
    except ConfigError:
        return None
    steps: list[str | int] = [int(i) if i else name for name, i in _STEP.findall(path)]
    return root.line_of(*steps)


# --------------------------------------------------------------- applier


@dataclass
class ReloadResult:
    """What a reload did.

    Attributes:
        ok: the new config is running.
        message: one line for the log, the console and the CLI.
        changes: what changed (empty when refused or nothing changed).
        error: the ConfigError (or data-plane refusal) when refused.
    """

    ok: bool
    message: str
    changes: list[str] = field(default_factory=list)
    error: Exception | None = None


class Reloader:
    """Owns the running config and pushes routing tables into the data plane."""

    def __init__(self, dp: Any, config: Config, monitor: HealthMonitor | None,
                 base_dir: Path | None = None) -> None:
        self.dp = dp
        self.config = config
        self.monitor = monitor
        self.base_dir = base_dir or Path.cwd()
        self.reloads = 0
        self.refused = 0
        self.last_error: str | None = None
        # The running config's text (the console shows it); None when unknown.
        self.text: str | None = _read_text(config.source)
        self._lock = threading.Lock()

    def apply_initial(self) -> None:
        """Install the start-up table (proxy mode only), before any worker runs.

        Raises:
            DataplaneError: C refused the table.
            ring.RingError: a ring could not be built.
        """
        table = routing_settings(self.config)
        if table is not None:
            self.dp.set_routing(table)

    def reload(self, path: str | os.PathLike[str] | None = None) -> ReloadResult:
        """Re-read the config file and apply what changed, or refuse and keep running.

        Args:
            path: the file (default: the one the running config came from).

        Returns:
            The outcome; never raises for a bad config or a refused table.
        """
        with self._lock:
            source = os.fspath(path) if path is not None else self.config.source
            return self._record(self._reload(source))

    def reload_text(self, text: str) -> ReloadResult:
        """Apply config text (the console's paste or upload), or refuse and keep running.

        Errors carry the text's line numbers and no file name. On success the
        text is also written over the running config's file (atomically), so
        a later SIGHUP or restart runs what was applied; if it can't be
        written the new config still runs and the message says so.
        """
        with self._lock:
            result = self._record(self._reload_text(text, None, self.config.source))
            if result.ok and self.config.source is not None:
                try:
                    _write_atomically(self.config.source, text)
                except OSError as exc:
                    result.message += (f"; NOT saved to {self.config.source} "
                                       f"({exc.strerror}): a restart runs the old file")
                    log.error("%s", result.message, extra={"event": "reload"})
            return result

    def check_text(self, text: str) -> ConfigError | None:
        """Why text would be refused by reload_text (validation and fixed settings), or None.

        Read only: provisioning is planned by a real reload, not here.
        """
        try:
            new = parse_config(text, None, self.base_dir)
        except ConfigError as exc:
            return exc
        refusal = refused_change(self.config, new)
        if refusal is not None:
            refusal.line = line_in(text, refusal.path)
        return refusal

    def _record(self, result: ReloadResult) -> ReloadResult:
        if result.ok:
            self.reloads += 1
            self.last_error = None
            log.info("%s", result.message, extra={"event": "reload"})
            for change in result.changes:
                log.info("  %s", change, extra={"event": "reload"})
        else:
            self.refused += 1
            self.last_error = str(result.error)
            log.error("%s", result.message, extra={"event": "reload"})
        return result

    def _reload(self, source: str | None) -> ReloadResult:
        if source is None:
            err = ConfigError("the running config was not read from a file; name one")
            return self._refuse(err)
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            return self._refuse(ConfigError(f"cannot read: {exc.strerror}", file=source))
        except UnicodeDecodeError as exc:
            return self._refuse(ConfigError(f"not UTF-8 text ({exc.reason})", file=source))
        return self._reload_text(text, source, source)

    def _reload_text(self, text: str, shown: str | None, source: str | None) -> ReloadResult:
        """Validate and apply text; errors name `shown` as the file."""
        try:
            new = dataclasses.replace(parse_config(text, shown, self.base_dir), source=source)
        except ConfigError as exc:
            return self._refuse(exc)
        refusal = refused_change(self.config, new)
        if refusal is not None:
            refusal.file = shown
            refusal.line = line_in(text, refusal.path)
            return self._refuse(refusal)
        changes = describe_changes(self.config, new)
        layout: provision.Plan | None = None
        if new.storage != self.config.storage:
            try:
                layout = self._plan_storage(new, text)
            except ConfigError as exc:
                return self._refuse(exc)
            changes += layout.lines() if layout.steps else []
        try:
            if layout is not None and layout.steps:
                provision.apply(layout, new, progress=log.info,
                                grower=lambda step: self.dp.grow_pool(step.region.size))
            self._apply(new)
        except (DataplaneError, ring.RingError, ValueError, provision.ProvisionError,
                OSError) as exc:
            return self._refuse(exc)
        if new.logging.level != self.config.logging.level:
            logging_setup.set_level(new.logging.level)
        self.config = new
        self.text = text
        what = f"{len(changes)} change{'s' if len(changes) != 1 else ''}" if changes \
            else "no changes"
        return ReloadResult(True, f"reloaded {shown or 'the config from the console'}: {what}",
                            changes)

    def _plan_storage(self, new: Config, text: str) -> provision.Plan:
        """The provisioning plan for new, refusing what can't happen live."""
        try:
            layout = provision.plan(new)
        except provision.ProvisionError as exc:
            raise ConfigError(str(exc), file=new.source) from None
        for name in layout.shrinks():
            i = next(i for i, p in enumerate(new.storage.pools) if p.name == name)
            path = f"storage.pools[{i}].size"
            raise ConfigError(f"shrinking pool {name} can't happen while "
                              f"serving; stop smartswitch and run `smartswitch provision` "
                              f"(allow_shrink: true), then start it", path=path,
                              file=new.source, line=line_in(text, path))
        return layout

    def _apply(self, new: Config) -> None:
        """Swap the routing table in, keeping states by identity."""
        if not new.proxy:
            return
        monitor = self.monitor
        lock = monitor.lock if monitor is not None else threading.Lock()
        with lock:
            states = monitor.states() if monitor is not None else {}
            table = routing_settings(new, states)
            self.dp.set_routing(table)
            if monitor is not None:
                installed = {b.identity: states.get(b.identity, "up") for b in new.all_backends}
                monitor.set_backends(new.all_backends, installed)

    def _refuse(self, err: Exception) -> ReloadResult:
        return ReloadResult(False, f"reload refused, still running the previous config: {err}",
                            error=err)


def _read_text(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write_atomically(path: str, text: str) -> None:
    """Replace path with text: a temporary file beside it, fsync, rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_current: Reloader | None = None


def install(reloader: Reloader | None) -> None:
    """Make reloader the one reload() uses (the runner does, for the console)."""
    global _current
    _current = reloader


def reload(path: str | os.PathLike[str] | None = None) -> ReloadResult:
    """Reload the running appliance's config (the console's action, like SIGHUP).

    Raises:
        RuntimeError: no appliance is running in this process.
    """
    if _current is None:
        raise RuntimeError("no appliance is running in this process")
    return _current.reload(path)
