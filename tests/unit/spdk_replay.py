"""Replay of the recorded SPDK JSON-RPC transcripts (../shared/spdk/transcripts) for tests.

`ReplayClient` is the real `spdk.rpc.client.JSONRPCClient` with its socket replaced: requests
go through the client's own request building and error formatting, and every answer is a
recorded one. Nothing here makes up a response: a request with no recorded exchange fails the
test.

Matching: method and params must equal a recorded exchange's (after placeholders). Exchanges
are a timeline: a call that changes state is served by the first match at or after the cursor
and moves the cursor past it; a read is served by the first match at or after the cursor
without moving it; calls whose answer does not depend on state (version, method list, waits)
are served from anywhere. For the methods that SPDK documents as taking a bdev's name or alias
interchangeably, the two forms match each other when the recording showed them to be the same
bdev.

Placeholders: `<WORKDIR>` becomes the test's directory. Every UUID in the file (bdev, lvstore
and lvol UUIDs, the host NQN's) is replaced by a fresh random one, consistently, so a test that
hard-codes a recorded UUID fails: the code must take it from an earlier result.
"""

from __future__ import annotations

import json
import os
import re
import uuid as uuidlib
from pathlib import Path
from typing import Any

from spdk.rpc.client import JSONRPCClient

from spdk_bindings.rpc import READ_METHODS

TRANSCRIPTS = Path(os.environ.get("SS_SPDK_TRANSCRIPTS", "/work/shared/spdk/transcripts"))
STATELESS = frozenset({"spdk_get_version", "rpc_get_methods", "framework_wait_init",
                       "bdev_wait_for_examine"})
NAME_OR_ALIAS = frozenset({"bdev_get_bdevs", "bdev_lvol_resize", "bdev_lvol_delete"})
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}")


def _rewrite(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_rewrite(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, fn) for k, v in value.items()}
    return value


def load(name: str, workdir: str, uuids: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The exchanges of transcript `name` (header dropped), placeholders filled in.

    Each exchange keeps its line number in the file as `line` (the header is line 0).
    """
    uuids = {} if uuids is None else uuids

    def fill(text: str) -> str:
        text = text.replace("<WORKDIR>", workdir)
        return UUID_RE.sub(lambda m: uuids.setdefault(m.group(0).lower(),
                                                      str(uuidlib.uuid4())), text)

    out = []
    with open(TRANSCRIPTS / name, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh):
            ex = json.loads(line)
            if "header" in ex:
                continue
            ex = _rewrite(ex, fill)
            ex["line"] = line_no
            out.append(ex)
    return out


class Replay:
    """A timeline of recorded exchanges and the requests served from it."""

    def __init__(self, name: str, workdir: str, start: int = 0, stop: int | None = None,
                 stateless_from: tuple[str, ...] = ("provisioning.jsonl",)) -> None:
        self.uuids: dict[str, str] = {}
        self.exchanges = load(name, workdir, self.uuids)
        self.extra = [ex for other in stateless_from if other != name
                      for ex in load(other, workdir, self.uuids) if ex["method"] in STATELESS]
        self.cursor = start
        self.stop = stop
        self.served: list[dict[str, Any]] = []
        self.same: dict[str, str] = {}  # name or alias -> canonical name, from the recording
        for ex in self.exchanges:
            result = ex.get("result")
            if ex["method"] == "bdev_get_bdevs" and isinstance(result, list):
                for b in result:
                    for alias in b.get("aliases", ()):
                        self.same[alias] = b["name"]
            if ex["method"] == "bdev_lvol_get_lvols" and isinstance(result, list):
                for lv in result:
                    self.same[lv["alias"]] = lv["uuid"]

    def line(self, line_no: int) -> dict[str, Any]:
        """The exchange recorded on line `line_no` of the file."""
        return next(ex for ex in self.exchanges if ex["line"] == line_no)

    def _key(self, method: str, params: dict[str, Any]) -> str:
        if method in NAME_OR_ALIAS and isinstance(params.get("name"), str):
            params = dict(params, name=self.same.get(params["name"], params["name"]))
        return json.dumps([method, params], sort_keys=True)

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The recorded exchange for this request; AssertionError if there is none."""
        want = self._key(method, params)
        if method in STATELESS:
            pool = self.exchanges + self.extra
        else:
            pool = [ex for ex in self.exchanges if ex["line"] >= self.cursor
                    and (self.stop is None or ex["line"] < self.stop)]
        for ex in pool:
            if self._key(ex["method"], ex["params"]) == want:
                if method not in STATELESS and method not in READ_METHODS:
                    self.cursor = ex["line"] + 1
                self.served.append(ex)
                return ex
        raise AssertionError(f"no recorded exchange for {method} {params!r} at or after line "
                             f"{self.cursor} (stop {self.stop})")

    def methods(self) -> list[str]:
        """Methods served so far, in order."""
        return [ex["method"] for ex in self.served]


class ReplayClient(JSONRPCClient):
    """The spdk 26.9 JSONRPCClient, answering from a Replay instead of a socket."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self._answers: list[dict[str, Any]] = []
        super().__init__("replay", None, timeout=5.0)

    def _connect(self, addr, port):  # noqa: D102 - no socket to open
        self.sock = None

    def flush(self):  # noqa: D102 - serve the queued requests from the recording
        for req in self._reqs:
            ex = self.replay.answer(req["method"], req.get("params", {}))
            reply = {"jsonrpc": "2.0", "id": req["id"]}
            if "error" in ex:
                reply["error"] = ex["error"]
            else:
                reply["result"] = ex["result"]
            # Through JSON text, as the socket would carry it.
            self._answers.append(json.loads(json.dumps(reply)))
        self._reqs = []

    def recv(self):  # noqa: D102
        return self._answers.pop(0)

    def close(self):  # noqa: D102
        self.sock = None
