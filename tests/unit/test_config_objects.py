"""The objects section: defaults, the rules that need the rest of the config, bad input
named by file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.runtime.settings import dataplane_settings
from appliance.storage import provision
from appliance.storage.serving import objects_settings

STORAGE = """\
storage:
  dir: var
  devices:
    - {name: d, kind: file, path: d.img, size: 64MiB}
  pools:
    - {name: items, device: d, size: 50%, segment_size: 2MiB}
    - {name: objs, device: d, size: 50%, role: objects, segment_size: 2MiB}
"""


def load(text: str, tmp_path: Path):
    return parse_config(text, "o.yaml", base_dir=tmp_path)


def test_the_built_in_storage_serves_a_default_bucket(tmp_path: Path) -> None:
    o = load("", tmp_path).objects
    assert o is not None and o.url == "http://127.0.0.1:8081/"
    assert [b.name for b in o.buckets] == ["default"]


def test_storage_without_an_objects_pool_serves_no_objects(tmp_path: Path) -> None:
    text = STORAGE.replace("    - {name: objs, device: d, size: 50%, role: objects, "
                           "segment_size: 2MiB}\n", "")
    assert load(text, tmp_path).objects is None


def test_null_or_disabled_turns_objects_off(tmp_path: Path) -> None:
    assert load(STORAGE + "objects: null\n", tmp_path).objects is None
    o = load(STORAGE + "objects: {enabled: false, pool: objs}\n", tmp_path).objects
    assert o is not None and not o.enabled


def test_settings_give_the_objects_pool_its_own_store(tmp_path: Path) -> None:
    config = load(STORAGE + "objects:\n  pool: objs\n  listen: 127.0.0.1:0\n"
                  "  chunk_size: 1MiB\n  buckets: [{name: photos}, {name: logs.v2}]\n",
                  tmp_path)
    layout = provision.plan(config)
    s = objects_settings(config, layout)
    assert s is not None and s.port == 0 and s.chunk_bytes == 1024**2
    assert s.store.item_size_max == 1024**2 and s.store.index_dir.endswith("index-objs")
    assert s.store.device_offset == layout.regions["objs"].offset
    assert [b.name for b in s.buckets] == ["photos", "logs.v2"]
    assert dataplane_settings(config, listen=False, objects=s).objects is None


BAD = [
    pytest.param("objects:\n  pool: items\n",
                 "o.yaml:9: objects.pool: no storage pool 'items' with role: objects "
                 "(objects pools: objs)", id="pool-not-objects"),
    pytest.param("objects:\n  pool: objs\n  chunk_size: 4MiB\n",
                 "o.yaml:10: objects.chunk_size: chunks of 4194304 bytes need pool objs's "
                 "segment_size to be at least chunk_size; lower chunk_size or raise "
                 "the pool's segment_size", id="chunk-over-segment"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: Bad_Name}]\n",
                 "o.yaml:10: objects.buckets[0].name: expected a bucket name of 3 to 63 "
                 "lower-case letters, digits, '.' and '-', starting and ending with a letter "
                 "or digit, got 'Bad_Name'", id="bucket-name"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: aaa}, {name: aaa}]\n",
                 "o.yaml:10: objects.buckets[1].name: duplicate bucket name 'aaa' (also "
                 "objects.buckets[0])", id="duplicate-bucket"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: s3, "
                 "origin: 'http://127.0.0.1:9000/'}]\n",
                 "o.yaml:10: objects.buckets[0].origin_bucket: an s3 bucket names its "
                 "origin_bucket (the bucket on the endpoint); other kinds have none",
                 id="s3-without-bucket"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: lan}]\n",
                 "o.yaml:10: objects.buckets[0].kind: expected one of local, http, s3, "
                 "got 'lan'", id="bad-kind"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: http}]\n",
                 "o.yaml:10: objects.buckets[0].origin: missing; a http bucket caches an "
                 "origin: give its URL", id="http-without-origin"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, origin: 'http://a/'}]\n",
                 "o.yaml:10: objects.buckets[0].origin: a local bucket has no origin (it is "
                 "the store of record); remove origin or set kind: http", id="local-origin"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: http, "
                 "origin: 'ftp://a/'}]\n",
                 "o.yaml:10: objects.buckets[0].origin: expected an origin URL like "
                 "http://127.0.0.1:8080/ or https://origin.example/assets/, got 'ftp://a/'",
                 id="ftp-origin"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: http, "
                 "origin: 'http://a/', origin_ca_file: /etc/hostname}]\n",
                 "o.yaml:10: objects.buckets[0].origin_ca_file: origin_ca_file is for an "
                 "https origin; remove it or give an https:// origin", id="ca-file-on-http"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: http, "
                 "origin: 'https://a/', origin_ca_file: /nonexistent/ca.pem}]\n",
                 "o.yaml:10: objects.buckets[0].origin_ca_file: no such file: "
                 "/nonexistent/ca.pem (the CA certificates, PEM, that the origin's "
                 "certificate is checked against)", id="missing-ca-file"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, flash_admission: miss}]\n",
                 "o.yaml:10: objects.buckets[0].flash_admission: a local bucket is the store "
                 "of record: every object it holds is on flash; remove flash_admission or "
                 "set kind: http", id="local-flash-admission"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: http, "
                 "origin: 'http://a/', flash_admission: later}]\n",
                 "o.yaml:10: objects.buckets[0].flash_admission: expected miss (every "
                 "fetched copy to flash) or second_request (small objects to flash when "
                 "requested again), got 'later'", id="bad-flash-admission"),
    pytest.param("objects:\n  pool: objs\n  buckets: [{name: web, kind: s3, "
                 "origin: 'http://a/', origin_bucket: media, origin_credentials: "
                 "{access_key_id: AKIA1}}]\n",
                 "o.yaml:10: objects.buckets[0].origin_credentials.secret_access_key_file: "
                 "missing; every origin credentials (access_key_id, secret_access_key_file, "
                 "region) needs a secret_access_key_file",
                 id="credentials-without-secret"),
    pytest.param("objects:\n  pool: objs\n  listen: 127.0.0.1:8080\n",
                 "o.yaml:10: objects.listen: 127.0.0.1:8080 is also console.listen; give "
                 "objects its own port", id="port-clash"),
    pytest.param("objects:\n  pool: objs\n  max_object_sise: 1GiB\n",
                 "o.yaml:10: objects.max_object_sise: unknown key; did you mean "
                 "max_object_size? expected one of enabled, listen, pool, chunk_size, "
                 "max_object_size, hot_tier, max_header_size, max_headers, max_uri_size, "
                 "request_timeout, keepalive_timeout, buckets", id="unknown-key"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_objects_config_names_file_line_and_path(tmp_path: Path, extra: str,
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(STORAGE + extra, tmp_path)
    assert str(info.value) == message


S3_BUCKET = """\
objects:
  pool: objs
  buckets:
    - name: media
      kind: s3
      origin: http://127.0.0.1:9000/
      origin_bucket: media
      origin_credentials:
        access_key_id: AKIAEXAMPLE
        secret_access_key_file: {secret}
        region: eu-west-3
"""


def test_origin_credentials_read_the_secret_from_its_file_and_never_show_it(
        tmp_path: Path) -> None:
    (tmp_path / "media.secret").write_text("wJalrXUtnFEMI/K7MDENG+bPxRfiCY\n")
    config = load(STORAGE + S3_BUCKET.format(secret="media.secret"), tmp_path)
    cred = config.objects.buckets[0].origin_credentials
    assert (cred.access_key_id, cred.region) == ("AKIAEXAMPLE", "eu-west-3")
    assert cred.secret_access_key == "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
    assert "wJalr" not in repr(config.objects)
    b = objects_settings(config, provision.plan(config)).buckets[0]
    assert (b.s3_access_key_id, b.s3_region) == ("AKIAEXAMPLE", "eu-west-3")
    assert b.s3_secret_access_key == cred.secret_access_key and "wJalr" not in repr(b)


@pytest.mark.parametrize("content,reason", [
    (None, "cannot read the secret access key from {path}: No such file or directory"),
    ("two words\n", "{path} must hold one secret access key (1 to 128 printable "
     "characters, no spaces)"),
    ("\n", "{path} must hold one secret access key (1 to 128 printable characters, "
     "no spaces)"),
])
def test_an_unreadable_or_bad_secret_file_is_named_with_its_line(
        tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "media.secret"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load(STORAGE + S3_BUCKET.format(secret="media.secret"), tmp_path)
    assert str(info.value) == ("o.yaml:17: objects.buckets[0].origin_credentials."
                               "secret_access_key_file: " + reason.format(path=path))


def test_only_an_s3_bucket_takes_origin_credentials(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("secret\n")
    with pytest.raises(ConfigError) as info:
        load(STORAGE + "objects:\n  pool: objs\n  buckets: [{name: web, kind: http, "
             "origin: 'http://a/', origin_credentials: {access_key_id: AKIA1, "
             "secret_access_key_file: s}}]\n", tmp_path)
    assert str(info.value) == ("o.yaml:10: objects.buckets[0].origin_credentials: only an s3 "
                               "bucket signs its origin's requests; remove origin_credentials "
                               "or set kind: s3")


def test_an_https_origin_is_verified_against_its_host(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = load(STORAGE + "objects:\n  pool: objs\n  buckets:\n"
                  "    - {name: web, kind: http, origin: 'https://127.0.0.1/assets/', "
                  "origin_ca_file: ca.pem}\n"
                  "    - {name: alt, kind: http, origin: 'https://127.0.0.1:8443/'}\n",
                  tmp_path)
    web, alt = objects_settings(config, provision.plan(config)).buckets
    assert (web.origin_port, web.origin_tls, web.origin_tls_name) == (443, 1, "127.0.0.1")
    assert web.origin_host == "127.0.0.1" and web.origin_path == "/assets/"
    assert web.origin_ca_file == str(tmp_path / "ca.pem")
    assert (alt.origin_host, alt.origin_ca_file) == ("127.0.0.1:8443", None)


def test_check_describes_each_bucket_and_its_origin(tmp_path: Path) -> None:
    (tmp_path / "media.secret").write_text("secret\n")
    config = load(STORAGE + S3_BUCKET.format(secret="media.secret").replace(
        "  buckets:\n", "  buckets:\n    - {name: default}\n"
        "    - {name: web, kind: http, origin: 'https://origin.example/assets/'}\n"), tmp_path)
    assert [b.describe() for b in config.objects.buckets] == [
        "default (local)", "web (http cache of https://origin.example/assets/)",
        "media (s3 cache of http://127.0.0.1:9000/media/, signed)"]
