"""CLI subcommands that act on a running appliance through its REST API (/api/v1).

`smartswitch backend drain NAME`, `smartswitch key get KEY`, `smartswitch objects
purge BUCKET --prefix P`, ... call the same
API routes as the console pages, which call the same appliance.runtime.control
actions: one implementation of each action. The appliance is found through
the config's console.listen (or --url); credentials are a bearer token from
$SMARTSWITCH_TOKEN or the config's first console.auth.tokens entry. Without
console.auth (loopback only) the CLI opens a session and sends its CSRF token,
as a browser page does.
"""

from __future__ import annotations

import argparse
import getpass
import http.cookiejar
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from appliance.cli.config_file import config_path
from appliance.config import ConfigError, load_config, passwords
from appliance.runtime.local_client import reachable_host

TOKEN_ENV = "SMARTSWITCH_TOKEN"
TIMEOUT_S = 30.0
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2


class ApiError(Exception):
    """The API answered with an error (status and its message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """A small REST client over urllib (no event loop needed in the CLI)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token
        self.csrf: str | None = None
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if method != "GET" and self.token is None and self.csrf is None:
            self.csrf = self.call("GET", "/session").get("csrf_token")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(f"{self.base}/api/v1{path}", data=data, method=method,
                                     headers=headers)
        try:
            with self.opener.open(req, timeout=TIMEOUT_S) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode("utf-8", "replace") or exc.reason}
            if isinstance(payload, dict) and "error" not in payload:
                return _Refused(exc.code, payload)
            raise ApiError(exc.code, payload.get("error", str(payload))) from None


class _Refused(dict):  # a 4xx whose body is a result (config apply's 422)
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        self.status = status


def _client(args: argparse.Namespace) -> Client:
    token = os.environ.get(TOKEN_ENV) or None
    url = args.url
    if url is None or token is None:
        config = load_config(config_path(args))  # the same default config as `run`
        if url is None:
            console = config.console
            host = reachable_host(console.host)
            host = f"[{host}]" if ":" in host else host
            if console.port == 0:
                raise ConfigError("is port 0 (picked at start): pass --url, the console= "
                                  "address from the ready line", path="console.listen",
                                  file=config.source)
            url = f"http://{host}:{console.port}"
        if token is None and config.console.auth.tokens:
            token = config.console.auth.tokens[0]
    return Client(url, token)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _run(args: argparse.Namespace, action: Callable[[Client], int]) -> int:
    try:
        return action(_client(args))
    except ApiError as exc:
        print(f"smartswitch: {exc} (HTTP {exc.status})", file=sys.stderr)
        return EXIT_FAILED
    except urllib.error.URLError as exc:
        print(f"smartswitch: no console answering: {exc.reason}; is the appliance running "
              f"with console.enabled, and is --url or console.listen right?", file=sys.stderr)
        return EXIT_UNREACHABLE


# ---- actions ----

def cmd_backend(args: argparse.Namespace) -> int:
    def act(c: Client) -> int:
        if args.action == "list":
            data = c.call("GET", "/backends")
            if not data["backends"]:
                print("standalone mode: no back ends")
            for b in data["backends"]:
                print(f"{b['name']:<16} {b['address']:<22} {b['state']:<9} "
                      f"requests={b['requests']} errors={b['errors']} p99_us={b['p99_us']}")
            return EXIT_OK
        if not args.name:
            raise ApiError(400, f"backend {args.action} needs a NAME")
        b = c.call("POST", f"/backends/{urllib.parse.quote(args.name, safe='')}/{args.action}")
        print(f"{b['name']} {b['address']}: {b['state']}")
        return EXIT_OK
    return _run(args, act)


def cmd_key(args: argparse.Namespace) -> int:
    def act(c: Client) -> int:
        path = f"/keys/{urllib.parse.quote(args.key, safe='')}"
        if args.action == "get":
            k = c.call("GET", path)
            owner = f"{k['owner']['name']} {k['owner']['address']} ({k['owner']['state']})" \
                if k["owner"] else "- (standalone)"
            ttl = "-" if k["tier"] == "absent" else (
                "never" if k["ttl_left_s"] is None else f"{k['ttl_left_s']}s")
            print(f"owner: {owner}\nlocal: {k['tier']}")
            if k["tier"] != "absent":
                print(f"size: {k['size']}\nflags: {k['flags']}\nttl_left: {ttl}\ncas: {k['cas']}")
            return EXIT_OK
        r = c.call("DELETE", path)
        print(r["reply"])
        return EXIT_OK if r["deleted"] else EXIT_FAILED
    return _run(args, act)


OBJECTS_USAGE = "expected `objects`, `objects BUCKET` or `objects purge BUCKET [--prefix P]`"


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def cmd_objects(args: argparse.Namespace) -> int:
    words = list(args.words)
    purge = len(words) == 2 and words[0] == "purge"
    if words == ["purge"]:
        print("smartswitch: objects purge needs a BUCKET", file=sys.stderr)
        return EXIT_FAILED
    if len(words) > 2 or (len(words) == 2 and not purge):
        print(f"smartswitch: {OBJECTS_USAGE}", file=sys.stderr)
        return EXIT_FAILED
    if not purge and (args.prefix is not None or args.yes):
        print("smartswitch: --prefix and --yes go with `objects purge BUCKET`",
              file=sys.stderr)
        return EXIT_FAILED
    # As flush does: dropping a whole bucket (its only copy, for kind local) asks for --yes.
    if purge and not args.prefix and not args.yes:
        print(f"smartswitch: purging without --prefix drops every object in bucket "
              f"{words[1]}; pass --yes, or --prefix P for only the keys under P",
              file=sys.stderr)
        return EXIT_FAILED

    def act(c: Client) -> int:
        if purge:
            name = urllib.parse.quote(words[1], safe="")
            r = c.call("POST", f"/buckets/{name}/purge", {"prefix": args.prefix or ""})
            under = f" under prefix {r['prefix']!r}" if r["prefix"] else ""
            print(f"purged {r['purged']} objects from bucket {r['bucket']}{under}")
            return EXIT_OK
        if words:
            b = c.call("GET", f"/buckets/{urllib.parse.quote(words[0], safe='')}")
            for key, value in b.items():
                print(f"{key}: {_ratio(value) if key == 'hit_ratio' else value}")
            return EXIT_OK
        data = c.call("GET", "/buckets")
        print(data["message"])
        for b in data["buckets"]:
            print(f"{b['name']:<16} {b['kind']:<6} objects={b['objects']} "
                  f"object_bytes={b['object_bytes']} hits={b['hits']} misses={b['misses']} "
                  f"hit_ratio={_ratio(b['hit_ratio'])} bytes_out={b['bytes_out']} "
                  f"bytes_in={b['bytes_in']}")
        return EXIT_OK
    return _run(args, act)


def cmd_stats(args: argparse.Namespace) -> int:
    def act(c: Client) -> int:
        s = c.call("GET", "/stats")
        for name, value in s["counters"].items():
            print(f"{name} {value}")
        lat = s["latency"]
        print(f"requests {s['requests']}\np50_us {lat['p50_us']}\np99_us {lat['p99_us']}")
        return EXIT_OK
    return _run(args, act)


def cmd_flush(args: argparse.Namespace) -> int:
    if not args.yes:
        print("smartswitch: flush drops every item this appliance holds; pass --yes",
              file=sys.stderr)
        return EXIT_FAILED

    def act(c: Client) -> int:
        c.call("POST", "/flush", {"confirm": True})
        print("flushed the local store")
        return EXIT_OK
    return _run(args, act)


def cmd_apply(args: argparse.Namespace) -> int:
    with open(args.new_file, encoding="utf-8") as f:
        text = f.read()

    def act(c: Client) -> int:
        r = c.call("POST", "/config/apply", {"text": text})
        print(r["message"])
        for line in r.get("changes", []):
            print(f"  {line}")
        return EXIT_OK if r["ok"] else EXIT_FAILED
    return _run(args, act)


def cmd_events(args: argparse.Namespace) -> int:
    def act(c: Client) -> int:
        for e in c.call("GET", f"/events?limit={args.limit}")["events"]:
            print(f"{e['id']:>6} {e['kind']:<8} {e['level']:<8} {e['message']}")
        return EXIT_OK
    return _run(args, act)


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print a scrypt hash for console.auth.password_hash (password from stdin or a prompt)."""
    if sys.stdin.isatty():
        first = getpass.getpass("console password: ")
        if first != getpass.getpass("again: "):
            print("smartswitch: the two passwords differ", file=sys.stderr)
            return EXIT_FAILED
    else:
        first = sys.stdin.readline().rstrip("\n")
    if not first:
        print("smartswitch: empty password", file=sys.stderr)
        return EXIT_FAILED
    print(passwords.hash_password(first))
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add the console subcommands to `smartswitch`'s parser."""
    where = ("talks to the running appliance's REST API at console.listen (or --url); token "
             f"from ${TOKEN_ENV} or console.auth.tokens[0]")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE",
                       help="YAML config naming console.listen and tokens (default: the "
                            "embedded configs/default.yaml)")
        p.add_argument("--url", metavar="URL", help="the console, e.g. http://127.0.0.1:8080")

    p = sub.add_parser("backend", help=f"list, drain, eject or restore back ends ({where})")
    p.add_argument("action", choices=["list", "drain", "eject", "restore"])
    p.add_argument("name", nargs="?", metavar="NAME")
    common(p)
    p.set_defaults(func=cmd_backend)

    p = sub.add_parser("key", help=f"look a key up or delete it ({where})")
    p.add_argument("action", choices=["get", "delete"])
    p.add_argument("key", metavar="KEY")
    common(p)
    p.set_defaults(func=cmd_key)

    p = sub.add_parser("objects", help=f"buckets and their figures; `objects BUCKET` for "
                                       f"one, `objects purge BUCKET --prefix P` to drop the "
                                       f"objects under P ({where})")
    p.add_argument("words", nargs="*", metavar="[purge] BUCKET",
                   help="nothing: every bucket; BUCKET: that one; purge BUCKET: drop objects")
    p.add_argument("--prefix", metavar="P",
                   help="purge only the keys that start with P (default: the whole bucket)")
    p.add_argument("--yes", action="store_true", help="really purge the whole bucket")
    common(p)
    p.set_defaults(func=cmd_objects)

    p = sub.add_parser("stats", help=f"counters and request latency ({where})")
    common(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("flush", help=f"drop every item the appliance holds ({where})")
    p.add_argument("--yes", action="store_true", help="really flush")
    common(p)
    p.set_defaults(func=cmd_flush)

    p = sub.add_parser("apply", help=f"reload the running appliance with FILE ({where})")
    p.add_argument("new_file", metavar="FILE", help="the config to apply")
    common(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("events", help=f"the event log ({where})")
    p.add_argument("--limit", type=int, default=50)
    common(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("hash-password", help="print a scrypt hash for "
                                             "console.auth.password_hash")
    p.set_defaults(func=cmd_hash_password)
