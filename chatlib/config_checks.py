"""Reading a configuration document field by field, with errors that name the field.

Every section parser uses these, so "unknown key", "missing key" and "out of range" read the
same way in every section, whether the config service rejects a change or a service finds a
document it cannot use.
"""

from __future__ import annotations

from typing import Any


class InvalidConfig(ValueError):
    """A configuration document breaks the schema or an invariant; the message says where."""


def fields(value: Any, where: str, required: set[str]) -> dict[str, Any]:
    """``value`` as a JSON object with exactly the known keys."""
    if not isinstance(value, dict):
        raise InvalidConfig(f"{where} must be a JSON object, got {_kind(value)}")
    unknown = sorted(set(value) - required)
    if unknown:
        known = ", ".join(sorted(required))
        raise InvalidConfig(f"{where}: unknown key {unknown[0]!r} (known keys: {known})")
    missing = sorted(required - set(value))
    if missing:
        raise InvalidConfig(f"{where}: key {missing[0]!r} is missing")
    return value


def integer(obj: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfig(f"{where}.{key} must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise InvalidConfig(f"{where}.{key} must be between {low} and {high}, got {value}")
    return value


def number(obj: dict[str, Any], key: str, where: str, low: float, high: float) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidConfig(f"{where}.{key} must be a number, got {_kind(value)}")
    if not low <= value <= high:
        raise InvalidConfig(f"{where}.{key} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def boolean(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj[key]
    if not isinstance(value, bool):
        raise InvalidConfig(f"{where}.{key} must be true or false, got {_kind(value)}")
    return value


def text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidConfig(f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def array(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj[key]
    if not isinstance(value, list):
        raise InvalidConfig(f"{where}.{key} must be a JSON array, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"[:80]
    if isinstance(value, list):
        return "an array"
    return "an object"
