from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from chatlib.settings import ConfigError, Env, RedisAccess, redis_access


@dataclass(frozen=True)
class Settings:
    redis: RedisAccess
    host: str
    port: int
    ops_port: int
    ops_host: str
    #: Admin bearer token -> the operator name the audit trail records for it.
    admin_tokens: dict[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        read = Env(env)
        return cls(
            redis=redis_access(read),
            host=read.text("CHAT_CONFIG_HOST", "127.0.0.1"),
            port=read.integer("CHAT_CONFIG_PORT", 7301, minimum=1),
            ops_port=read.integer("CHAT_OPS_PORT", 9501, minimum=1),
            ops_host=read.text("CHAT_OPS_HOST", "127.0.0.1"),
            admin_tokens=admin_tokens(read.items("CHAT_ADMIN_TOKENS")),
        )


def admin_tokens(items: list[str]) -> dict[str, str]:
    """``name=token`` pairs; tokens shorter than 24 characters are refused as guessable."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, token = item.partition("=")
        if not sep or not name or not token:
            raise ConfigError(f"setting CHAT_ADMIN_TOKENS: {item[:20]!r}... is not name=token")
        if len(token) < 24:
            raise ConfigError(
                f"setting CHAT_ADMIN_TOKENS: the token of {name!r} is shorter than 24 characters"
            )
        found[token] = name
    return found


def find_operator(tokens: Mapping[str, str], offered: str) -> str | None:
    """The operator whose token this is; compares in constant time against every token."""
    operator = None
    for token, name in tokens.items():
        if secrets.compare_digest(token.encode(), offered.encode()):
            operator = name
    return operator
