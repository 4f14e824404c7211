"""The console section of the config, and console password hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import passwords
from appliance.config import ConfigError, parse_config

HASH = passwords.hash_password("pw", log2_n=10)
TOKEN = "t" * 24


def parse(text: str, tmp_path: Path) -> object:
    return parse_config(text, "c.yaml", base_dir=tmp_path)


def test_defaults_are_loopback_8080_without_auth(tmp_path: Path) -> None:
    console = parse_config("", base_dir=tmp_path).console
    assert (console.enabled, console.listen, console.auth.enabled) == (True, ("127.0.0.1", 8080),
                                                                       False)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("console:\n  listen: 0.0.0.0:8080\n",
                 "c.yaml:2: console.listen: the console refuses to listen on 0.0.0.0:8080, which "
                 "is not a loopback address, without auth", id="non-loopback-without-auth"),
    pytest.param("console:\n  listen: localhost:80\n",
                 "c.yaml:2: console.listen: expected HOST:PORT with a numeric address",
                 id="host-name"),
    pytest.param("console:\n  listen: ::1:80\n", "c.yaml:2: console.listen: expected HOST:PORT",
                 id="v6-without-brackets"),
    pytest.param("console:\n  auth:\n    password_hash: hunter2\n",
                 "c.yaml:3: console.auth.password_hash: expected a scrypt hash", id="bad-hash"),
    pytest.param("console:\n  auth:\n    tokens: [short]\n",
                 "c.yaml:3: console.auth.tokens[0]: expected a token of 24 to 256", id="short"),
    pytest.param(f"console:\n  auth:\n    tokens:\n      - {TOKEN}\n      - {TOKEN}\n",
                 "c.yaml:5: console.auth.tokens[1]: duplicate token", id="duplicate-token"),
    pytest.param("console:\n  session_ttl: 1s\n", "c.yaml:2: console.session_ttl: expected a "
                 "duration from 1m", id="ttl-too-short"),
])
def test_bad_console_settings_name_line_and_path(text: str, message: str,
                                                 tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path)
    assert str(info.value).startswith(message), str(info.value)


def test_non_loopback_with_auth_is_accepted(tmp_path: Path) -> None:
    c = parse(f"console:\n  listen: '[::]:9000'\n  auth:\n    password_hash: '{HASH}'\n",
              tmp_path).console
    assert c.listen == ("::", 9000) and c.auth.enabled and not c.loopback
    assert "pw" not in repr(c.auth) and HASH not in repr(c.auth)


def test_password_hash_round_trip() -> None:
    stored = passwords.parse(HASH)
    assert passwords.verify("pw", stored)
    assert not passwords.verify("pW", stored)
    assert passwords.hash_password("pw", log2_n=10) != HASH  # salted
    with pytest.raises(ValueError):
        passwords.parse("scrypt$40$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==")  # absurd cost


def test_a_character_yaml_refuses_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse("logging:\n  level: info\n\x00\n", tmp_path)
    assert str(info.value) == "c.yaml:3: YAML syntax error: character U+0000 is not allowed in " \
                              "YAML text"
