"""The console in a real browser: Debian's chromium, driven by Playwright.

A real appliance process (proxy mode, two real memcached back ends, console
with a password) under a bounded load. The test logs in, watches the
dashboard counters move, drains a back end and sees its state change, pastes
a bad config and sees the line-numbered error, and looks a key up. A second
appliance serves objects: the Buckets page shows a bucket's figures move with
real HTTP requests and purges by prefix after a confirmation.
Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ARTIFACTS, PASSWORD, PASSWORD_HASH, with_objects
from integration.helpers.procs import (
    Server,
    appliance_config,
    start_appliance,
    start_memcached,
)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LOAD_SECONDS = 20.0     # the load stops by itself after this
LOAD_MAX_OPS = 200_000  # ... or after this many requests
TIMEOUT_MS = 15_000
CONSOLE_RE = re.compile(r"console=(http://\S+)")
OBJECTS_RE = re.compile(r"objects=http://127\.0\.0\.1:(\d+)/")


def load(port: int, stop: threading.Event) -> None:
    """Sets and gets over one connection, pipelined 20 at a time, bounded in time and count."""
    deadline = time.monotonic() + LOAD_SECONDS
    ops = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        while not stop.is_set() and time.monotonic() < deadline and ops < LOAD_MAX_OPS:
            batch = b"".join(b"set load:%d 0 0 4\r\nvalu\r\nget load:%d\r\n" % (i % 500, i % 500)
                             for i in range(ops, ops + 10))
            s.sendall(batch)
            want = batch.count(b"\r\nget ")  # one END per get
            got = b""
            while got.count(b"END\r\n") < want:
                chunk = s.recv(65536)
                if not chunk:
                    return
                got += chunk
            ops += 20
            time.sleep(0.002)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Server, str, list[Server]]]:
    backends = [start_memcached(tmp_path), start_memcached(tmp_path)]
    app: Server | None = None
    try:
        cfg = appliance_config(tmp_path, memcached__udp_port=None)
        cfg["backends"] = [{"name": f"mc{i + 1}", "host": "127.0.0.1", "port": b.port}
                           for i, b in enumerate(backends)]
        cfg["backend_defaults"] = {"retry_after": "60s"}
        cfg["console"] = {"enabled": True, "listen": "127.0.0.1:0",
                          "auth": {"password_hash": PASSWORD_HASH}}
        path = tmp_path / "appliance.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        app = start_appliance(path)
        m = CONSOLE_RE.search(app.log())
        assert m, app.log()
        yield app, m.group(1), backends
    finally:
        if app is not None:
            rc = app.terminate()
            assert rc == 0, app.log()
        for b in backends:
            b.kill9()


@pytest.fixture
def serving_objects(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A standalone appliance process serving objects: (console URL, objects port)."""
    cfg = appliance_config(tmp_path, memcached__udp_port=None)
    with_objects(cfg)
    cfg["console"] = {"enabled": True, "listen": "127.0.0.1:0",
                      "auth": {"password_hash": PASSWORD_HASH}}
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    app = start_appliance(path)
    try:
        console, objects = CONSOLE_RE.search(app.log()), OBJECTS_RE.search(app.log())
        assert console and objects, app.log()
        yield console.group(1), int(objects.group(1))
    finally:
        rc = app.terminate()
        assert rc == 0, app.log()


def object_request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    """One request to the objects listener; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def log_in(page: object, url: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login-button")  # type: ignore[attr-defined]


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def number(text: str) -> float:
    m = re.match(r"([\d.]+)([kMG]?)", text)
    assert m, text
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


def test_console_in_chromium(running: tuple[Server, str, list[Server]]) -> None:
    assert shutil.which(CHROMIUM), "make deps installs Debian's chromium"
    from playwright.sync_api import expect, sync_playwright

    app, url, _ = running
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(app.port, stop), daemon=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Log in.
            page.goto(url)
            expect(page.locator("#login")).to_be_visible()
            page.fill("#password", "not the password")
            page.click("#login-button")
            expect(page.locator("#login-error")).to_have_text("wrong password")
            log_in(page, url)
            expect(page.locator("#dashboard")).to_be_visible()

            # The counters move while a load runs, without reloading the page.
            total = page.locator("#stat-requests-total")
            expect(total).not_to_have_text("-")
            before = number(total.inner_text())
            loader.start()
            page.wait_for_function(
                "b => { const t = document.querySelector('#stat-requests-total').textContent;"
                " const m = /([\\d.]+)([kMG]?)/.exec(t); if (!m) return false;"
                " const n = parseFloat(m[1]) * ({'': 1, k: 1e3, M: 1e6, G: 1e9})[m[2]];"
                " return n > b + 1000; }", arg=before)
            page.wait_for_function(
                "() => parseFloat(document.querySelector('#stat-rps').textContent) > 0")
            page.wait_for_timeout(3000)  # a few more samples on the charts
            shot(page, "dashboard")

            # Drain a back end and watch its state change.
            page.click("nav a[href='#backends']")
            row = page.locator("#backends-table tr[data-name='mc1']")
            expect(row.locator("td.state")).to_have_text("up")
            row.locator("button[data-action='drain']").click()
            expect(row.locator("td.state")).to_have_text("draining")
            shot(page, "backends")

            # Paste a bad config: the error names its line and YAML path.
            page.click("nav a[href='#config']")
            text_area = page.locator("#config-text")
            expect(text_area).to_have_value(re.compile("backends"))
            good = text_area.input_value()
            bad = good.replace("level: info", "level: loud")
            line = bad.splitlines().index("  level: loud") + 1
            text_area.fill(bad)
            page.click("#validate-button")
            expect(page.locator("#config-errors li").first).to_contain_text(
                f"line {line}: logging.level: expected one of debug, info, warning, error")
            shot(page, "config-error")

            # Look a key up: the owning back end and the local tier.
            with socket.create_connection(("127.0.0.1", app.port), timeout=5) as s:
                s.sendall(b"set browser:key 7 300 11\r\nhello world\r\n")
                assert s.recv(100) == b"STORED\r\n"
                s.sendall(b"get browser:key\r\n")  # the read keeps a local copy
                got = b""
                while not got.endswith(b"END\r\n"):
                    got += s.recv(100)
            page.click("nav a[href='#keys']")
            page.fill("#key-input", "browser:key")
            page.click("#key-lookup")
            result = page.locator("#key-result")
            expect(result).to_contain_text("local tier")
            expect(result).to_contain_text(re.compile(r"owner\s*mc[12] 127\.0\.0\.1:\d+"))
            expect(result).to_contain_text(re.compile(r"local tier\s*(dram|device)"))
            expect(result).to_contain_text("11 B")
            shot(page, "keys")

            page.click("nav a[href='#events']")
            expect(page.locator("#events-table")).to_contain_text("operator: drain back end mc1")
            shot(page, "events")
            assert errors == [], errors
        finally:
            stop.set()
            browser.close()
            if loader.is_alive():
                loader.join(LOAD_SECONDS)


def test_buckets_page_in_chromium(serving_objects: tuple[str, int]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, port = serving_objects
    for key in ("photos/1.jpg", "photos/2.jpg", "docs/a.txt"):
        assert object_request(port, "PUT", f"/default/{key}", b"x" * 2048) == 200
    for _ in range(2):
        assert object_request(port, "GET", "/default/photos/1.jpg") == 200
    assert object_request(port, "GET", "/default/absent") == 404
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 700})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            log_in(page, url)
            expect(page.locator("#dashboard")).to_be_visible()
            page.click("nav a[href='#buckets']")
            expect(page.locator("#buckets-message")).to_have_text(
                f"object requests on http://127.0.0.1:{port}/ from pool objects")
            row = page.locator("#buckets-table tr[data-name='default']")
            expect(row.locator("td").nth(1)).to_have_text("local")
            for column, text in (("objects", "3"), ("object_bytes", "6.0 KiB"), ("hits", "2"),
                                 ("misses", "1"), ("hit_ratio", "66.7%"),
                                 ("bytes_out", "4.0 KiB"), ("bytes_in", "6.0 KiB")):
                expect(row.locator(f"td.{column}")).to_have_text(text)

            # A purge happens only once confirmed; the dialog says what it drops.
            page.fill("#purge-prefix", "photos/")
            asked: list[str] = []

            def answer(accept: bool) -> None:
                def on_dialog(dialog: object) -> None:
                    asked.append(dialog.message)  # type: ignore[attr-defined]
                    dialog.accept() if accept else dialog.dismiss()  # type: ignore[attr-defined]
                page.once("dialog", on_dialog)

            answer(False)
            page.click("#purge-button")
            page.wait_for_timeout(500)
            assert asked == ['Purge drops the objects under "photos/" in bucket default. '
                             'Purge now?']
            assert object_request(port, "GET", "/default/photos/2.jpg") == 200
            answer(True)
            page.click("#purge-button")
            expect(page.locator("#purge-result")).to_have_text(
                'purged 2 objects from bucket default under prefix "photos/"')
            expect(row.locator("td.objects")).to_have_text("1")
            assert object_request(port, "GET", "/default/photos/1.jpg") == 404
            assert object_request(port, "GET", "/default/docs/a.txt") == 200
            shot(page, "buckets")
            assert errors == [], errors
        finally:
            browser.close()
