"""The `objects` section: object requests (HTTP/1.1, S3 path-style) on the appliance.

    objects:
      enabled: true
      listen: 127.0.0.1:8081       # HTTP listener
      pool: objects                # a storage pool with role: objects
      chunk_size: 1MiB             # objects are stored in chunks of this size
      max_object_size: 5GiB
      hot_tier: 64MiB              # DRAM copies of read chunks (each at most 1/32 of it)
      max_header_size: 8KiB        # request line and fields; over it: 431
      max_headers: 100
      max_uri_size: 4KiB           # over it: 414
      request_timeout: 30s         # a request that stops making progress: closed
      keepalive_timeout: 60s       # an idle kept-alive connection: closed
      buckets:
        - name: default
          kind: local              # the appliance is the store of record
        - name: assets
          kind: http               # a cache of an HTTP origin
          origin: http://127.0.0.1:8000/static/   # or https://... (TLS, verified)
          default_ttl: 60s         # freshness when the origin says nothing
          origin_timeout: 10s
          flash_admission: second_request  # or miss: when a fetched copy goes to flash
        - name: media
          kind: s3                 # a cache of a bucket on an S3-compatible endpoint
          origin: http://minio.internal:9000/
          origin_bucket: media
          origin_credentials:      # sign its requests (AWS Signature Version 4)
            access_key_id: AKIAIOSFODNN7EXAMPLE
            secret_access_key_file: /etc/smartswitch/media.secret
            region: us-east-1

Without the section, these defaults serve the storage pool named `objects` when there
is one (the built-in storage has one), else nothing; `objects: null` or `enabled: false`
turns object requests off. A `kind: local` bucket's objects
are never evicted; the pool refuses writes (507) once its live objects fill it.

A cached bucket's `flash_admission` says when a fetched copy is written to flash.
`second_request` (the default) keeps a small object (up to 1/256 of `hot_tier`, and at
most 1MiB) in DRAM only until it is requested again, then writes it: an object requested
once (most of a cache's traffic, as CDN operators find) never costs a flash write, and
misses cost what they cost Varnish's memory storage. Such a copy is gone after DRAM
evicts it or a restart (the next request is a miss). Larger objects, and every object
under `miss`, are written to flash as they arrive, as nginx's proxy_cache does.

An s3 bucket without `origin_credentials` sends its requests unsigned (a public bucket);
with them, every request is signed, so it can front a private bucket. The secret key is
read from its own file (readable by the appliance only, as an operator keeps such keys),
never written in the config, and never shown by the API, the console or the logs.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config.console import host_port
from appliance.config.schema import (
    boolean,
    duration_ms,
    int_range,
    derived,
    list_of,
    one_of,
    optional_section,
    path_value,
    scalar,
    section,
    setting,
)
from appliance.config.yaml_source import ConfigError, Node

# S3's rules for a bucket name (the ones that matter in a path-style URL).
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_name(raw: Any) -> str:
    """3 to 63 lower-case letters, digits, '.' and '-', starting and ending alphanumeric."""
    if not isinstance(raw, str) or not _BUCKET_NAME.match(raw) or ".." in raw:
        raise ValueError("a bucket name of 3 to 63 lower-case letters, digits, '.' and '-', "
                         "starting and ending with a letter or digit")
    return raw


def pool_name(raw: Any) -> str:
    """The name of a pool in storage.pools."""
    if not isinstance(raw, str) or not raw:
        raise ValueError("the name of a pool in storage.pools")
    return raw


def size_in(lo: int, hi: int, what: str) -> Any:
    from appliance.config.schema import size_range

    parse = size_range(lo, hi)

    def convert(raw: Any) -> int:
        try:
            return parse(raw)
        except ValueError:
            raise ValueError(what) from None

    return convert


def optional_flash_admission(raw: Any) -> str | None:
    """miss or second_request, or null (the default)."""
    if raw is None:
        return None
    if raw not in ("miss", "second_request"):
        raise ValueError("miss (every fetched copy to flash) or second_request (small "
                         "objects to flash when requested again)")
    return str(raw)


def optional_bucket(raw: Any) -> str | None:
    """An S3 bucket name, or null."""
    return None if raw is None else bucket_name(raw)


def origin_url(raw: Any) -> tuple[str, int, str, bool] | None:
    """http[s]://HOST[:PORT][/PATH] -> (host, port, path ending in '/', https), or null."""
    if raw is None:
        return None
    expected = ("an origin URL like http://127.0.0.1:8080/ or "
                "https://origin.example/assets/")
    if not isinstance(raw, str):
        raise ValueError(expected)
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
            parts.fragment:
        raise ValueError(expected)
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ValueError(expected) from None
    path = parts.path or "/"
    return parts.hostname, port, path if path.endswith("/") else path + "/", tls


def optional_path(node: Node, path: str, ctx: Any) -> Path | None:
    """A file system path, or null."""
    return None if node.value is None else path_value(node, path, ctx)


_ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9+/=._-]{3,128}$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


def access_key_id(raw: Any) -> str:
    """An access key id: 3 to 128 letters, digits and +/=._-."""
    if not isinstance(raw, str) or not _ACCESS_KEY_ID.match(raw):
        raise ValueError("an access key id like AKIAIOSFODNN7EXAMPLE")
    return raw


def region_name(raw: Any) -> str:
    """A region like us-east-1 (lower-case letters, digits, '-')."""
    if not isinstance(raw, str) or not _REGION.match(raw):
        raise ValueError("a region like us-east-1")
    return raw


@dataclass(frozen=True)
class OriginCredentials:
    """`origin_credentials` of an s3 bucket: the key its requests are signed with."""

    NOUN = "origin credentials (access_key_id, secret_access_key_file, region)"

    access_key_id: str = setting(scalar(access_key_id))
    # A file holding the secret access key (one line), so that it is not in the config.
    secret_access_key_file: Path = setting(path_value)
    region: str = setting(scalar(region_name), "us-east-1")
    secret_access_key: str = derived("")  # read from secret_access_key_file

    def _check(self, node: Node, path: str) -> OriginCredentials:
        where = {"path": f"{path}.secret_access_key_file",
                 "line": node.line_of("secret_access_key_file")}
        try:
            secret = self.secret_access_key_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            raise ConfigError(f"cannot read the secret access key from "
                              f"{self.secret_access_key_file}: {reason}", **where) from None
        if not 1 <= len(secret) <= 128 or any(not ch.isprintable() or ch.isspace()
                                              for ch in secret):
            raise ConfigError(f"{self.secret_access_key_file} must hold one secret access key "
                              f"(1 to 128 printable characters, no spaces)", **where)
        return dataclasses.replace(self, secret_access_key=secret)

    def __repr__(self) -> str:  # never print the secret into logs
        return (f"OriginCredentials(access_key_id={self.access_key_id!r}, "
                f"secret_access_key_file={str(self.secret_access_key_file)!r}, "
                f"region={self.region!r})")


@dataclass(frozen=True)
class BucketConfig:
    """One entry of `objects.buckets`."""

    NOUN = ("bucket settings (name, kind, origin, origin_bucket, origin_credentials, "
            "origin_ca_file, default_ttl, origin_timeout, flash_admission)")

    name: str = setting(scalar(bucket_name))
    # local: the appliance is the store of record. http: a cache of an HTTP origin,
    # where /<bucket>/<key> is fetched as <origin><key>. s3: a cache of a bucket on an
    # S3-compatible endpoint, fetched as <origin>/<origin_bucket>/<key>.
    kind: str = setting(scalar(one_of("local", "http", "s3")), "local")
    origin: tuple[str, int, str, bool] | None = setting(scalar(origin_url), None)
    # s3: the bucket on the S3-compatible endpoint `origin` (path-style).
    origin_bucket: str | None = setting(scalar(optional_bucket), None)
    # s3: sign the endpoint's requests with this key (none: unsigned, a public bucket).
    origin_credentials: OriginCredentials | None = setting(optional_section(OriginCredentials),
                                                           None)
    # https origins: the CA certificates (PEM) its certificate is checked against
    # (none: the system's trust store). Verification is never turned off.
    origin_ca_file: Path | None = setting(optional_path, None)
    # How long a copy is fresh when the origin's Cache-Control and Expires say nothing.
    default_ttl: int = setting(scalar(duration_ms(0, 365 * 86_400_000, whole_seconds=True)),
                               "60s")
    # Connecting, and each wait for the origin's bytes, before the fetch is given up (504).
    origin_timeout: int = setting(scalar(duration_ms(100, 600_000)), "10s")
    # Cached buckets: when a fetched copy is written to flash (see the module's text).
    flash_admission: str | None = setting(scalar(optional_flash_admission), None)

    def _check(self, node: Node, path: str) -> BucketConfig:
        if self.kind == "local" and self.flash_admission is not None:
            raise ConfigError("a local bucket is the store of record: every object it holds "
                              "is on flash; remove flash_admission or set kind: http",
                              path=f"{path}.flash_admission",
                              line=node.line_of("flash_admission"))
        if self.kind == "local" and self.origin is not None:
            raise ConfigError("a local bucket has no origin (it is the store of record); "
                              "remove origin or set kind: http",
                              path=f"{path}.origin", line=node.line_of("origin"))
        if self.kind != "local" and self.origin is None:
            raise ConfigError(f"missing; a {self.kind} bucket caches an origin: give its URL",
                              path=f"{path}.origin", line=node.line)
        if (self.kind == "s3") != (self.origin_bucket is not None):
            raise ConfigError("an s3 bucket names its origin_bucket (the bucket on the "
                              "endpoint); other kinds have none",
                              path=f"{path}.origin_bucket",
                              line=node.line_of("origin_bucket"))
        if self.kind != "s3" and self.origin_credentials is not None:
            raise ConfigError("only an s3 bucket signs its origin's requests; remove "
                              "origin_credentials or set kind: s3",
                              path=f"{path}.origin_credentials",
                              line=node.line_of("origin_credentials"))
        if self.origin_ca_file is not None and not (self.origin and self.origin[3]):
            raise ConfigError("origin_ca_file is for an https origin; remove it or give an "
                              "https:// origin", path=f"{path}.origin_ca_file",
                              line=node.line_of("origin_ca_file"))
        if self.origin_ca_file is not None and not self.origin_ca_file.is_file():
            raise ConfigError(f"no such file: {self.origin_ca_file} (the CA certificates, "
                              f"PEM, that the origin's certificate is checked against)",
                              path=f"{path}.origin_ca_file",
                              line=node.line_of("origin_ca_file"))
        if self.kind == "s3" and self.origin is not None and self.origin[2] != "/":
            raise ConfigError("an S3 endpoint's URL has no path (the bucket is origin_bucket)",
                              path=f"{path}.origin", line=node.line_of("origin"))
        return self

    def describe(self) -> str:
        """The bucket in one phrase, for `smartswitch check`: name, kind, origin."""
        if self.origin is None:
            return f"{self.name} (local)"
        scheme = "https" if self.origin[3] else "http"
        where = f"{scheme}://{self.origin_host_field}{self.origin_path}"
        signed = ""
        if self.kind == "s3":
            signed = ", signed" if self.origin_credentials else ", unsigned"
        return f"{self.name} ({self.kind} cache of {where}{signed})"

    @property
    def origin_host_field(self) -> str:
        """The origin's Host field: its host (an IPv6 one bracketed), and the port
        unless it is the scheme's own."""
        assert self.origin is not None
        host, port, _, tls = self.origin
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return host if port == (443 if tls else 80) else f"{host}:{port}"

    @property
    def flash_admission_or_default(self) -> str:
        """flash_admission as the data plane applies it (local buckets: unused)."""
        return self.flash_admission or "second_request"

    @property
    def origin_path(self) -> str:
        """The path keys are appended to at the origin."""
        assert self.origin is not None
        return f"/{self.origin_bucket}/" if self.kind == "s3" else self.origin[2]


@dataclass(frozen=True)
class ObjectsConfig:
    """`objects`: the HTTP listener for object requests and its buckets."""

    NOUN = ("objects settings (enabled, listen, pool, chunk_size, max_object_size, hot_tier, "
            "max_header_size, max_headers, max_uri_size, request_timeout, keepalive_timeout, "
            "buckets)")

    enabled: bool = setting(scalar(boolean), True)
    listen: tuple[str, int] = setting(scalar(host_port), "127.0.0.1:8081")
    pool: str = setting(scalar(pool_name), "objects")
    chunk_size: int = setting(scalar(size_in(64 * 1024, 64 * 1024**2,
                                             "a chunk size from 64KiB to 64MiB")), "1MiB")
    max_object_size: int = setting(scalar(size_in(1, 2**50, "a size like 5GiB")), "5GiB")
    hot_tier: int = setting(scalar(size_in(0, 2**40, "a size like 64MiB, or 0")), "64MiB")
    max_header_size: int = setting(scalar(size_in(1024, 1024**2,
                                                  "a size from 1KiB to 1MiB")), "8KiB")
    max_headers: int = setting(scalar(int_range(8, 100, "a number of header fields")), 100)
    max_uri_size: int = setting(scalar(size_in(256, 64 * 1024, "a size from 256 to 64KiB")),
                                "4KiB")
    request_timeout: int = setting(scalar(duration_ms(1000, 3_600_000)), "30s")
    keepalive_timeout: int = setting(scalar(duration_ms(1000, 3_600_000)), "60s")
    buckets: tuple[BucketConfig, ...] = setting(list_of(BucketConfig, "buckets"),
                                                [{"name": "default", "kind": "local"}])

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _check(self, node: Node, path: str) -> ObjectsConfig:
        names = [b.name for b in self.buckets]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"duplicate bucket name {name!r} (also {path}.buckets"
                                  f"[{names.index(name)}])", path=f"{path}.buckets[{i}].name",
                                  line=node.line_of("buckets", i, "name"))
        if self.enabled and not self.buckets:
            raise ConfigError("expected at least one bucket (or enabled: false)",
                              path=f"{path}.buckets", line=node.line_of("buckets"))
        return self


def objects_section() -> Any:
    """The converter for Config.objects: `objects: null` means no object requests."""
    convert = section(ObjectsConfig)

    def build(node: Node, path: str, ctx: Any) -> ObjectsConfig | None:
        if node.value is None and node.line is not None:
            return None  # written as null
        return convert(node, path, ctx)

    return build


def check_objects(config: Any, node: Node) -> ObjectsConfig | None:
    """The rules that need the rest of the config: the pool, the ports.

    Without an objects section the defaults serve the `objects` pool when the storage
    has one (the built-in storage does), and nothing otherwise; a written section must
    name a pool that exists.

    Returns:
        The objects settings to serve, or None.

    Raises:
        ConfigError: naming the objects key at fault, with its line.
    """
    o = config.objects
    if o is None or not o.enabled:
        return o
    pool = next((p for p in config.storage.pools if p.name == o.pool), None)
    if node.child("objects") is None and (
            pool is None or pool.role != "objects"
            or config.storage.device(pool.device).kind == "spdk"):
        return None  # nothing the defaults could serve: off, as before objects existed
    line = node.line_of("objects", "pool")
    if pool is None or pool.role != "objects":
        have = [p.name for p in config.storage.pools if p.role == "objects"]
        raise ConfigError(f"no storage pool {o.pool!r} with role: objects"
                          + (f" (objects pools: {', '.join(have)})" if have else
                             "; add one to storage.pools with role: objects"),
                          path="objects.pool", line=line)
    if config.storage.device(pool.device).kind == "spdk":
        raise ConfigError(f"pool {pool.name} is on spdk device {pool.device}: objects pools "
                          f"are served from file and block devices only, so far",
                          path="objects.pool", line=line)
    # A chunk's record (its data, header and key) is exactly chunk_size, so segments
    # of a power-of-two size hold whole chunks.
    if pool.segment_size < o.chunk_size:
        raise ConfigError(f"chunks of {o.chunk_size} bytes need pool {pool.name}'s "
                          f"segment_size to be at least chunk_size; lower chunk_size "
                          f"or raise the pool's segment_size",
                          path="objects.chunk_size", line=node.line_of("objects", "chunk_size"))
    taken = {(config.memcached.listen, config.memcached.tcp_port): "memcached.tcp_port"}
    if config.console.enabled:
        taken[config.console.listen] = "console.listen"
    other = taken.get((o.host, o.port))
    if o.port and other:
        raise ConfigError(f"{o.host}:{o.port} is also {other}; give objects its own port",
                          path="objects.listen", line=node.line_of("objects", "listen"))
    return o
