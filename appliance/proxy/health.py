"""Back-end health: watch the states the data plane reports, probe the down ones.

The data plane marks a back end DOWN by itself (failure_limit failures in a
row) and never brings it back: that is the control plane's job. Two pieces:

* ``HealthMonitor.tick()`` runs on the housekeeping thread every tick: it
  reads every back end's state, logs each change it sees (``backend mc2
  127.0.0.1:11212 down after 3 failures``, ``... restored``) and counts them.
* ``HealthMonitor.run()`` is the prober thread: every retry_after it connects
  to each DOWN back end within connect_timeout, sends ``version`` and, on a
  VERSION reply within request_timeout, sets the back end UP again.

States are tracked by back-end identity (name, host, port), not by index, so
a reload that renumbers back ends neither loses nor invents a change. Both
threads crash loudly on anything unexpected, like the housekeeping thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.config.proxy import BackendConfig

log = logging.getLogger("smartswitch")

PROBE_POLL_S = 0.1
_VERSION_REPLY_MAX = 1024


class BackendPlane(Protocol):
    """What the monitor needs from dataplane.fastpath.Dataplane."""

    def backend_stats(self, index: int) -> dict[str, Any]: ...

    def backend_set_state(self, index: int, state: str) -> None: ...


def probe_version(host: str, port: int, connect_timeout_s: float, reply_timeout_s: float) -> bool:
    """Connect, send `version`, and say whether a VERSION line came back in time."""
    deadline = time.monotonic() + reply_timeout_s
    try:
        with socket.create_connection((host, port), timeout=connect_timeout_s) as sock:
            sock.sendall(b"version\r\n")
            reply = b""
            while b"\r\n" not in reply and len(reply) < _VERSION_REPLY_MAX:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
                chunk = sock.recv(_VERSION_REPLY_MAX)
                if not chunk:
                    return False
                reply += chunk
            return reply.startswith(b"VERSION ")
    except OSError:
        return False


Prober = Callable[[str, int, float, float], bool]


@dataclass
class _Watch:
    """One back end being watched: where it is in the live table and its last state."""

    index: int
    backend: BackendConfig
    state: str                    # as last seen (or as installed)
    next_probe: float | None = None


class HealthMonitor:
    """Logs back-end state changes and restores DOWN back ends that answer again.

    Attributes:
        state_changes: every change seen since start.
        changes_by_backend: the same, per back-end name.
        lock: held by the reload while it swaps tables, so a probe never sets
            the state of a back end by an index from the previous table.
    """

    def __init__(self, dp: BackendPlane, backends: Sequence[BackendConfig],
                 prober: Prober = probe_version,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dp = dp
        self.prober = prober
        self.clock = clock
        self.lock = threading.RLock()
        self.state_changes = 0
        self.changes_by_backend: dict[str, int] = {}
        self._generation = 0
        self._watches: list[_Watch] = []
        # Every back end starts up (the table's initial_state): a change the
        # data plane makes before the first tick is still a change to log.
        self.set_backends(backends, {b.identity: "up" for b in backends})

    def set_backends(self, backends: Sequence[BackendConfig],
                     installed: dict[tuple[str, str, int], str]) -> None:
        """Watch this back-end list (data-plane index order), e.g. after a reload.

        Args:
            backends: every back end, primary then spare pools.
            installed: the state each identity was installed with; back ends
                whose identity was watched before keep their last seen state
                so their next change is logged against it.
        """
        with self.lock:
            old = {w.backend.identity: w for w in self._watches}
            watches = []
            for i, b in enumerate(backends):
                prev = old.get(b.identity)
                state = prev.state if prev is not None else installed.get(b.identity, "up")
                watches.append(_Watch(i, b, state, prev.next_probe if prev else None))
            self._watches = watches
            self._generation += 1

    def states(self) -> dict[tuple[str, str, int], str]:
        """The live state of every watched back end, by identity (from the data plane)."""
        with self.lock:
            return {w.backend.identity: self.dp.backend_stats(w.index)["state"]
                    for w in self._watches}

    def tick(self) -> list[str]:
        """Poll every back end's state; log and count each change. Housekeeping thread.

        Returns:
            The messages logged (for tests).
        """
        messages = []
        with self.lock:
            now = self.clock()
            for w in self._watches:
                stats = self.dp.backend_stats(w.index)
                state = stats["state"]
                if state != w.state:
                    text = self._describe(w.backend, w.state, state, stats)
                    log.log(logging.WARNING if state == "down" else logging.INFO, "%s", text,
                            extra={"event": "backend"})
                    messages.append(text)
                    self.state_changes += 1
                    name = w.backend.name
                    self.changes_by_backend[name] = self.changes_by_backend.get(name, 0) + 1
                w.state = state
                if state != "down":
                    w.next_probe = None
                elif w.next_probe is None:
                    w.next_probe = now + w.backend.retry_after / 1000
        return messages

    @staticmethod
    def _describe(b: BackendConfig, old: str, new: str, stats: dict[str, Any]) -> str:
        where = f"backend {b.name} {b.address}"
        if new == "down":
            failures = stats.get("consecutive_failures") or b.failure_limit
            return f"{where} down after {failures} failures"
        if new == "up":
            return f"{where} restored" + ("" if old == "down" else f" (was {old})")
        return f"{where} {new}"

    def probe_due(self) -> int:
        """Probe every DOWN back end whose retry_after has passed. Prober thread.

        Returns:
            How many back ends were restored.
        """
        with self.lock:
            now = self.clock()
            generation = self._generation
            due = [w for w in self._watches
                   if w.state == "down" and w.next_probe is not None and w.next_probe <= now]
            for w in due:
                w.next_probe = now + w.backend.retry_after / 1000
        restored = 0
        for w in due:
            b = w.backend
            # Outside the lock: a probe may take connect + request timeout.
            if not self.prober(b.host, b.port, b.connect_timeout / 1000, b.request_timeout / 1000):
                log.debug("backend %s %s: probe got no VERSION reply", b.name, b.address)
                continue
            with self.lock:
                if generation != self._generation:
                    return restored  # a reload renumbered the table; the next pass retries
                if self.dp.backend_stats(w.index)["state"] == "down":
                    self.dp.backend_set_state(w.index, "up")
                    restored += 1
        return restored

    def run(self, stopping: threading.Event, on_crash: Callable[[str], None]) -> None:
        """The prober thread: probe_due() every 100 ms until stopping is set.

        Any exception is logged as critical and reported through on_crash
        (the supervisor then stops the appliance): a prober that died quietly
        would leave back ends down for ever.
        """
        try:
            while not stopping.wait(PROBE_POLL_S):
                self.probe_due()
        except BaseException as exc:
            log.critical("back-end prober failed: %s", exc, exc_info=True)
            on_crash("back-end prober failed")
