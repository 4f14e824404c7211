"""The servers of bench/objects.py: an nginx origin, Varnish and nginx proxy_cache in
front of it, and the appliance with two buckets: a cached bucket (kind: http) in front of
the same origin, and a local bucket holding the same objects as the store of record.

Each start_* function writes its server's config under a temp dir, starts it in the
foreground on a free loopback port, waits until it answers and returns a `Target`;
the caller stops it (`Target.server.stop()`), also on error. Nothing here measures.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

import run as core  # noqa: E402  (bench/run.py: Server, ports, the appliance's bench config)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
VARNISHSTAT = shutil.which("varnishstat") or "/usr/bin/varnishstat"
# The origin serves object NNN of a size at /default/<size>/<NNN>; Varnish and nginx-cache
# pass paths through, the appliance's cached bucket maps /cached/<key> to /default/<key>.
ORIGIN_DIR = "default"
LOCAL_BUCKET = "local"
CACHED_BUCKET = "cached"
START_TIMEOUT_S = 30.0
NUKE_LIMIT = 10_000
HTTP_TIMEOUT_S = 30.0


@dataclasses.dataclass
class Target:
    """One server the load generator is pointed at.

    Attributes:
        label: the row's name (nginx-origin, varnish, nginx-cache, smartswitch-cache,
            smartswitch-local).
        base: the URL of the bucket; object NNN of a size is base + "<size>/<NNN>".
        server: the process (tree) answering; its CPU is what the row charges.
        cache: what hit evidence it gives: "varnish" (varnishstat, X-Varnish, Age),
            "nginx" (X-Cache-Status), "origin" (it is the origin), "local" (the
            store of record), "cached-bucket" (a SmartSwitch cache of the origin).
        varnish_dir: varnishd's -n directory, for varnishstat.
        stats_url: the appliance console's URL of the bucket (its figures), for
            bucket_stats.
        cmd: the command line it was started with (for the report).
    """

    label: str
    base: str
    server: core.Server
    cache: str
    varnish_dir: Path | None = None
    stats_url: str | None = None
    cmd: list[str] = dataclasses.field(default_factory=list)

    @property
    def port(self) -> int:
        """The port base points at."""
        return int(urllib.parse.urlsplit(self.base).port or 80)


def object_names(sizes: dict[str, int], count: int) -> list[tuple[str, int]]:
    """Every object's key in the bucket ("1KiB/007") and its size in bytes."""
    return [(f"{name}/{i:03d}", size) for name, size in sizes.items() for i in range(count)]


def write_docroot(root: Path, sizes: dict[str, int], count: int) -> None:
    """Random bytes (incompressible) for each object, at root/<bucket>/<size>/<NNN>."""
    for key, size in object_names(sizes, count):
        path = root / ORIGIN_DIR / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def _nginx_conf(d: Path, workers: int, http_body: str) -> Path:
    """An nginx config whose every path (pid, logs, temp files) is under d."""
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read d (0700)
    temps = "\n".join(f"    {kind}_temp_path {d}/tmp-{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = d / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes {workers};\npid {d}/nginx.pid;\n"
        f"error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n{temps}\n    default_type application/octet-stream;\n"
        # keepalive_requests: nginx closes a kept-alive connection after 1000 requests by
        # default; neither Varnish nor the appliance does, so it would be one more reconnect.
        # tcp_nopush stays off (nginx's default): with it, nginx-cache's 64 KiB hits waited
        # ~40 ms each here (p50 44 ms, 1.2k req/s, against 1.2 ms and 29k without).
        "    sendfile on;\n    keepalive_requests 1000000;\n"
        f"{http_body}}}\n")
    return conf


def _start_nginx(d: Path, conf: Path, port: int, name: str) -> tuple[core.Server, list[str]]:
    cmd = [NGINX, "-p", str(d), "-c", str(conf), "-g", "daemon off;"]
    log = d / "stderr.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = core.Server(name, port, proc, log)
    try:
        core._wait_port(port, proc, START_TIMEOUT_S)
    except core.BenchError as e:
        server.stop()
        err = (d / "error.log").read_text(errors="replace") if (d / "error.log").exists() else ""
        raise core.BenchError(f"{name}: {e}\n{server.log_tail()}\n{err[-2000:]}") from e
    return server, cmd


def start_origin(d: Path, docroot: Path, workers: int) -> Target:
    """nginx serving the docroot, one access-log line per request (misses are counted).

    A path ending /m/<anything> is the object before /m/: that is how the miss pass
    asks every cache for a URL it has never seen while the origin still serves a real
    file. Responses carry Cache-Control: max-age=3600, so both caches keep them.
    """
    d.mkdir()
    port = core._free_port()
    body = (
        "    log_format bench '$request_uri $status $body_bytes_sent';\n"
        f"    access_log {d}/access.log bench;\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n        root {docroot};\n"
        "        expires 1h;\n"
        "        location / {\n            rewrite ^(.+)/m/[^/]+$ $1 break;\n        }\n"
        "    }\n")
    server, cmd = _start_nginx(d, _nginx_conf(d, workers, body), port, "nginx-origin")
    return Target("nginx-origin", f"http://127.0.0.1:{port}/{ORIGIN_DIR}/", server, "origin",
                  cmd=cmd)


def start_nginx_cache(d: Path, origin: Target, workers: int, cache_mib: int) -> Target:
    """A second nginx with proxy_cache in front of the origin (kept-alive upstream)."""
    d.mkdir()
    port = core._free_port()
    body = (
        "    access_log off;\n"
        f"    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:16m "
        f"max_size={cache_mib}m inactive=1h use_temp_path=off;\n"
        f"    upstream origin {{\n        server 127.0.0.1:{origin.port};\n"
        "        keepalive 64;\n    }\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n"
        "            proxy_pass http://origin;\n            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n            proxy_cache bench;\n'
        "            add_header X-Cache-Status $upstream_cache_status always;\n"
        "        }\n    }\n")
    server, cmd = _start_nginx(d, _nginx_conf(d, workers, body), port, "nginx-cache")
    return Target("nginx-cache", f"http://127.0.0.1:{port}/{ORIGIN_DIR}/", server, "nginx",
                  cmd=cmd)


def start_varnish(d: Path, origin: Target, cache_mib: int) -> Target:
    """varnishd in the foreground (-F) with the built-in VCL and -b the origin.

    nuke_limit: how many objects one fetch may evict to make room for its body.
    Varnish's default (50) is for stores of like-sized objects: once the miss runs
    have filled the store with 1 KiB objects, a 1 MiB fetch must evict ~700 of them
    and, limited to 50, fails (503 or a cut-off body). Raised so the miss path is
    fetch, evict, store; nginx-cache has no such limit (its cache manager evicts).
    `-j none`: no jail, so it runs as whoever starts it (as root the default jail
    would switch to the varnish user, who cannot enter the 0700 temp dir).
    """
    d.mkdir()
    port = core._free_port()
    cmd = [VARNISHD, "-F", "-j", "none", "-a", f"127.0.0.1:{port}",
           "-b", f"127.0.0.1:{origin.port}", "-s", f"malloc,{cache_mib}m", "-n", str(d / "n"),
           "-p", f"nuke_limit={NUKE_LIMIT}"]
    log = d / "varnishd.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = core.Server("varnish", port, proc, log)
    try:
        core._wait_port(port, proc, START_TIMEOUT_S)
    except core.BenchError as e:
        server.stop()
        raise core.BenchError(f"varnish: {e}\n{server.log_tail()}") from e
    return Target("varnish", f"http://127.0.0.1:{port}/{ORIGIN_DIR}/", server, "varnish",
                  varnish_dir=d / "n", cmd=cmd)


def smartswitch_config(d: Path, workers: int, cache_mib: int, origin: Target) -> Path:
    """run.py's bench config (default.yaml, ephemeral memcached port, UDP off, a 2 GiB
    sparse file device under d) with objects on 127.0.0.1:0, an objects hot tier of
    cache_mib (the memory Varnish is given) and two buckets: CACHED_BUCKET, a cache of
    the origin's ORIGIN_DIR, and LOCAL_BUCKET. The console is on (127.0.0.1:0) for the
    buckets' figures (GET /api/v1/buckets/NAME), read between runs only."""
    path = core.appliance_config(d, workers, 64, 2048, objects=True)
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    cfg["console"].update({"enabled": True, "listen": "127.0.0.1:0"})
    buckets = [
        # default_ttl is not what keeps the copies fresh: the origin's max-age=3600 is.
        {"name": CACHED_BUCKET, "kind": "http",
         "origin": f"http://127.0.0.1:{origin.port}/{ORIGIN_DIR}/", "default_ttl": "3600s"},
        {"name": LOCAL_BUCKET, "kind": "local"}]
    cfg["objects"].update({"listen": "127.0.0.1:0", "hot_tier": f"{cache_mib}MiB",
                           "buckets": buckets})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _ready_url(server: core.Server, key: str) -> str:
    """The URL the ready line gives for key (objects=, console=)."""
    found = re.findall(rf"\b{key}=(http://\S+/)", server.log.read_text(errors="replace"))
    if not found:
        server.stop()
        raise core.BenchError(f"smartswitch: no {key}=http://.../ in its ready line\n"
                              f"{server.log_tail()}")
    return found[-1]


def start_smartswitch(d: Path, python: str, workers: int, cache_mib: int,
                      origin: Target) -> tuple[Target, Target]:
    """The appliance (`python -m appliance run`): its cached bucket and its local bucket,
    one process, URLs from the ready line."""
    d.mkdir()
    cfg = smartswitch_config(d, workers, cache_mib, origin)
    server = core.start_appliance(python, cfg, d)
    url, console = _ready_url(server, "objects"), _ready_url(server, "console")
    cmd = [python, "-m", "appliance", "run", "--config", str(cfg)]
    local = Target("smartswitch-local", f"{url}{LOCAL_BUCKET}/", server, "local", cmd=cmd,
                   stats_url=f"{console}api/v1/buckets/{LOCAL_BUCKET}")
    return smartswitch_cached_target(local, f"{url}{CACHED_BUCKET}/",
                                     f"{console}api/v1/buckets/{CACHED_BUCKET}"), local


def smartswitch_cached_target(local: Target, bucket_url: str, stats_url: str) -> Target:
    """The appliance's bucket that caches the origin (kind: http), beside `local`.

    bucket_url is that bucket's objects URL ("http://127.0.0.1:PORT/cached/"); its keys
    map to the origin's, "<size>/<NNN>/m/<nonce>" reaching the origin as the same path
    under /default/, so the origin's /m/ rewrite makes its misses real fetches too.
    """
    return dataclasses.replace(local, label="smartswitch-cache", base=bucket_url,
                               cache="cached-bucket", stats_url=stats_url)


def put_objects(t: Target, docroot: Path, sizes: dict[str, int], count: int) -> None:
    """PUT every object of the docroot into t's bucket (one kept-alive connection)."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        for key, _ in object_names(sizes, count):
            body = (docroot / ORIGIN_DIR / key).read_bytes()
            conn.request("PUT", f"{u.path}{key}", body=body,
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise core.BenchError(f"{t.label}: PUT {u.path}{key} -> {r.status} {r.reason}")
    finally:
        conn.close()


def get_all(t: Target, docroot: Path, sizes: dict[str, int], count: int) -> None:
    """GET every object once through t (this is what warms a cache); each body must be
    the docroot's file, byte for byte."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        for key, size in object_names(sizes, count):
            conn.request("GET", f"{u.path}{key}")
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or body != (docroot / ORIGIN_DIR / key).read_bytes():
                raise core.BenchError(f"{t.label}: GET {u.path}{key} -> {r.status}, "
                                      f"{len(body)} of {size} bytes"
                                      + (", not the origin's" if len(body) == size else ""))
    finally:
        conn.close()


def probe(t: Target, path: str, expect: bytes) -> dict[str, str]:
    """One GET of path through t: its status, whether its body is `expect` ("body":
    "same" or "differs"), and the headers that tell a hit."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", f"{u.path}{path}")
        r = conn.getresponse()
        out = {"status": str(r.status), "body": "same" if r.read() == expect else "differs"}
        for name in ("X-Varnish", "Age", "X-Cache-Status"):
            if r.getheader(name) is not None:
                out[name] = r.getheader(name, "")
        return out
    finally:
        conn.close()


BUCKET_FIELDS = ("requests", "hits", "misses", "errors", "origin_fetches", "collapsed_fetches",
                 "revalidations", "bytes_out", "bytes_out_dram")


def bucket_stats(t: Target) -> dict[str, int]:
    """The appliance bucket's request, hit, miss, error and fetch counters (empty for
    other servers), from the console's GET /api/v1/buckets/NAME."""
    if t.stats_url is None:
        return {}
    u = urllib.parse.urlsplit(t.stats_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", u.path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise core.BenchError(f"{t.label}: GET {t.stats_url} -> {r.status}: {body[:200]!r}")
    finally:
        conn.close()
    figures = json.loads(body)
    return {k: int(figures[k]) for k in BUCKET_FIELDS}


def settled_bucket_stats(t: Target, timeout_s: float = 5.0) -> dict[str, int]:
    """bucket_stats once two readings 50 ms apart agree: a request wrk sent just before
    it stopped is counted when the worker reads it and as a hit or miss a moment later,
    so a single reading right after wrk can catch the one without the other."""
    last, deadline = bucket_stats(t), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = bucket_stats(t)
        if now == last:
            return now
        last = now
    return last


VARNISH_FIELDS = ("MAIN.client_req", "MAIN.cache_hit", "MAIN.cache_miss", "MAIN.fetch_failed",
                  "MAIN.n_lru_nuked")


def _varnishstat_once(t: Target) -> dict[str, int]:
    cmd = [VARNISHSTAT, "-n", str(t.varnish_dir), "-1"]
    for f in VARNISH_FIELDS:
        cmd += ["-f", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in VARNISH_FIELDS:
            out[parts[0].removeprefix("MAIN.")] = int(parts[1])
    if len(out) != len(VARNISH_FIELDS):
        raise core.BenchError(f"varnishstat -n {t.varnish_dir} gave {out}: "
                              f"{res.stderr.strip()}")
    return out


def varnishstat(t: Target) -> dict[str, int]:
    """Varnish's request, hit, miss, failed-fetch and LRU-nuke counters (empty for others).

    A worker thread adds its counts to the shared ones in batches, so right after a
    run they still grow for a moment: read until two readings 0.3 s apart agree.
    """
    if t.varnish_dir is None:
        return {}
    last = _varnishstat_once(t)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _varnishstat_once(t)
        if now == last:
            break
        last = now
    return last
