"""The `console` section: where the web console and REST API listen, and who may use them.

    console:
      enabled: true
      listen: 127.0.0.1:8080
      session_ttl: 12h
      auth:
        password_hash: null    # `smartswitch hash-password` prints one
        tokens: []             # API tokens (Authorization: Bearer ...)

The console refuses to listen on a non-loopback address unless auth has a
password hash or at least one token: that rule is checked here, so `smartswitch
check` and a reload refuse such a config with its line, as start-up does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from appliance.config import passwords
from appliance.config.schema import (
    Context,
    boolean,
    duration_ms,
    fail,
    optional,
    scalar,
    section,
    setting,
)
from appliance.config.yaml_source import ConfigError, Node, describe

TOKEN_MIN = 24
TOKEN_MAX = 256


def host_port(raw: Any) -> tuple[str, int]:
    """HOST:PORT with a numeric host ([v6]:port for IPv6); port 0 picks a free one."""
    expected = "HOST:PORT with a numeric address, like 127.0.0.1:8080 or [::1]:8080"
    if not isinstance(raw, str):
        raise ValueError(expected)
    text = raw.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(expected)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(expected) from None
    if addr.version == 6 and not text.startswith("["):
        raise ValueError(expected)
    return str(addr), int(port)


def password_hash(raw: Any) -> str:
    """A scrypt hash as appliance.config.passwords writes it (kept as the string)."""
    passwords.parse(raw)
    return raw


def tokens(node: Node, path: str, ctx: Context) -> tuple[str, ...]:
    """`console.auth.tokens`: a list of API tokens, each at least TOKEN_MIN characters."""
    if node.value is None:
        return ()
    if not isinstance(node.value, list):
        raise fail(f"expected a list of API tokens, got {describe(node)}", node, path)
    out = []
    for i, item in enumerate(node.value):
        raw = item.value
        if (not isinstance(raw, str) or not TOKEN_MIN <= len(raw) <= TOKEN_MAX
                or any(ch.isspace() or not ch.isprintable() for ch in raw)):
            shown = "a token of the wrong shape" if isinstance(raw, str) else describe(item)
            raise fail(f"expected a token of {TOKEN_MIN} to {TOKEN_MAX} printable characters "
                       f"without spaces (for example from `python3 -c \"import secrets; "
                       f"print(secrets.token_urlsafe(32))\"`), got {shown}",
                       item, f"{path}[{i}]")
        if raw in out:
            raise fail(f"duplicate token (also {path}[{out.index(raw)}])", item,
                       f"{path}[{i}]")
        out.append(raw)
    return tuple(out)


@dataclass(frozen=True)
class ConsoleAuthConfig:
    """`console.auth`: a login password (its hash) and API tokens."""

    NOUN = "console auth settings"

    password_hash: str | None = setting(scalar(optional(password_hash, "no password login")),
                                        None)
    tokens: tuple[str, ...] = setting(tokens, [])

    @property
    def enabled(self) -> bool:
        return self.password_hash is not None or bool(self.tokens)

    def __repr__(self) -> str:  # never print secrets into logs
        return (f"ConsoleAuthConfig(password_hash={'set' if self.password_hash else None}, "
                f"tokens={len(self.tokens)})")


@dataclass(frozen=True)
class ConsoleConfig:
    """`console`: the web console, REST API (/api/v1) and /metrics."""

    NOUN = "console settings"

    enabled: bool = setting(scalar(boolean), True)
    listen: tuple[str, int] = setting(scalar(host_port), "127.0.0.1:8080")
    session_ttl: int = setting(scalar(duration_ms(60_000, 30 * 86_400_000)), "12h")
    auth: ConsoleAuthConfig = setting(section(ConsoleAuthConfig), {})

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _check(self, node: Node, path: str) -> ConsoleConfig:
        if self.enabled and not self.loopback and not self.auth.enabled:
            raise ConfigError(
                f"the console refuses to listen on {self.address}, which is not a loopback "
                f"address, without auth; set console.auth.password_hash (`smartswitch "
                f"hash-password`) or console.auth.tokens, or listen on 127.0.0.1",
                path=f"{path}.listen" if path else "listen",
                line=node.line_of("listen"))
        return self
