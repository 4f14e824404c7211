"""Property-based run of schemathesis against /api/v1/openapi.json.

A real console (web/server.py, on its own thread, as the appliance runs it)
over a real data plane serving objects too; schemathesis generates requests for every operation
from the OpenAPI document and checks each response: no 5xx, a documented
status, content type and headers, a body that fits the schema, bad input
refused, and auth not ignored. Bounded: a fixed number of examples per
operation and no deadline (a shared 2-core machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import TOKEN, start, write_config
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from web.openapi import document
from web.server import ConsoleServer

EXAMPLES_PER_OPERATION = 30
# Operations whose input has rules JSON Schema can't state: a config must be
# valid YAML for this appliance, a key at most 250 bytes once encoded, a purge
# prefix at most 1024. A schema-valid request may rightly get 4xx there (asserted
# in test_console_api), so "schema-valid input is accepted" is not checked for them.
SEMANTIC_INPUT = {("POST", "/api/v1/config/apply"), ("DELETE", "/api/v1/keys/{key}"),
                  ("POST", "/api/v1/buckets/{name}/purge")}


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("schema")
    a = start(write_config(tmp, objects=True))  # the bucket routes answer with figures
    a.mc(b"set known 3 0 2\r\nhi\r\n")
    a.http("PUT", "/default/known", b"hi")
    server = ConsoleServer(a.control, a.control.config.console)
    server.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()
        a.stop()


@pytest.fixture
def api_schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(document())


# The event stream is a long-lived text/event-stream, tested in test_console_api.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/v1/stats/stream")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_matches_its_openapi_document(case: schemathesis.Case, console_url: str) -> None:
    # Every built-in check: no 5xx, documented status, content type and headers,
    # body fits the schema, bad input refused, auth not ignored.
    excluded = []
    if (case.method, case.path) in SEMANTIC_INPUT:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=console_url, headers={"Authorization": f"Bearer {TOKEN}"},
                           excluded_checks=excluded, timeout=30)
