"""The servers of bench/objects.py: an nginx origin, Varnish and nginx proxy_cache in
front of it, and the appliance serving the same objects from a local bucket.

Each start_* function writes its server's config under a temp dir, starts it in the
foreground on a free loopback port, waits until it answers and returns a `Target`;
the caller stops it (`Target.server.stop()`), also on error. Nothing here measures.
"""

from __future__ import annotations

import dataclasses
import http.client
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
BUCKET = "default"
START_TIMEOUT_S = 30.0
NUKE_LIMIT = 10_000
HTTP_TIMEOUT_S = 30.0
_OBJECTS_URL = re.compile(r"objects=(http://\S+/)")


@dataclasses.dataclass
class Target:
    """One server the load generator is pointed at.

    Attributes:
        label: the row's name (nginx-origin, varnish, nginx-cache, smartswitch).
        base: the URL of the bucket; object NNN of a size is base + "<size>/<NNN>".
        server: the process (tree) answering; its CPU is what the row charges.
        cache: what hit evidence it gives: "varnish" (varnishstat, X-Varnish, Age),
            "nginx" (X-Cache-Status), "origin" (it is the origin), "local" (the
            store of record), "cached-bucket" (a SmartSwitch cache of the origin).
        varnish_dir: varnishd's -n directory, for varnishstat.
        cmd: the command line it was started with (for the report).
    """

    label: str
    base: str
    server: core.Server
    cache: str
    varnish_dir: Path | None = None
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
        path = root / BUCKET / key
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
    return Target("nginx-origin", f"http://127.0.0.1:{port}/{BUCKET}/", server, "origin",
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
    return Target("nginx-cache", f"http://127.0.0.1:{port}/{BUCKET}/", server, "nginx", cmd=cmd)


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
    return Target("varnish", f"http://127.0.0.1:{port}/{BUCKET}/", server, "varnish",
                  varnish_dir=d / "n", cmd=cmd)


def smartswitch_config(d: Path, workers: int, cache_mib: int) -> Path:
    """run.py's bench config (default.yaml, ephemeral memcached port, UDP and console off,
    a 2 GiB sparse file device under d) with objects on 127.0.0.1:0 and an objects hot
    tier of cache_mib, the memory Varnish is given."""
    path = core.appliance_config(d, workers, 64, 2048, objects=True)
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    cfg["objects"].update({"listen": "127.0.0.1:0", "hot_tier": f"{cache_mib}MiB",
                           "buckets": [{"name": BUCKET, "kind": "local"}]})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_smartswitch(d: Path, python: str, workers: int, cache_mib: int) -> Target:
    """The appliance (`python -m appliance run`); its objects URL from the ready line."""
    d.mkdir()
    cfg = smartswitch_config(d, workers, cache_mib)
    server = core.start_appliance(python, cfg, d)
    found = _OBJECTS_URL.findall(server.log.read_text(errors="replace"))
    if not found:
        server.stop()
        raise core.BenchError(f"smartswitch: no objects=http://... in its ready line\n"
                              f"{server.log_tail()}")
    url = found[-1]
    return Target("smartswitch", f"{url}{BUCKET}/", server, "local",
                  cmd=[python, "-m", "appliance", "run", "--config", str(cfg)])


def smartswitch_cached_target(server: core.Server, bucket_url: str) -> Target:
    """A SmartSwitch bucket that caches the origin (kind: http), for the miss rows.

    bucket_url is that bucket's objects URL ("http://127.0.0.1:PORT/<bucket>/"); its
    keys must map to the origin's, so "<size>/<NNN>/m/<nonce>" reaches the origin as
    the same path under /default/. Such buckets are not built yet: objects.miss_targets
    calls this once run() has such a bucket's URL to give it (the appliance started
    with the bucket in its config); until then the report says so instead of a row.
    """
    return Target("smartswitch", bucket_url, server, "cached-bucket")


def put_objects(t: Target, docroot: Path, sizes: dict[str, int], count: int) -> None:
    """PUT every object of the docroot into t's bucket (one kept-alive connection)."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        for key, _ in object_names(sizes, count):
            body = (docroot / BUCKET / key).read_bytes()
            conn.request("PUT", f"{u.path}{key}", body=body,
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise core.BenchError(f"{t.label}: PUT {u.path}{key} -> {r.status} {r.reason}")
    finally:
        conn.close()


def get_all(t: Target, sizes: dict[str, int], count: int) -> None:
    """GET every object once through t (this is what warms a cache); check each body."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        for key, size in object_names(sizes, count):
            conn.request("GET", f"{u.path}{key}")
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or len(body) != size:
                raise core.BenchError(f"{t.label}: GET {u.path}{key} -> {r.status}, "
                                      f"{len(body)} of {size} bytes")
    finally:
        conn.close()


def probe(t: Target, path: str) -> dict[str, str]:
    """One GET of path through t: its status and the headers that tell a hit."""
    u = urllib.parse.urlsplit(t.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", f"{u.path}{path}")
        r = conn.getresponse()
        r.read()
        out = {"status": str(r.status)}
        for name in ("X-Varnish", "Age", "X-Cache-Status"):
            if r.getheader(name) is not None:
                out[name] = r.getheader(name, "")
        return out
    finally:
        conn.close()


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
