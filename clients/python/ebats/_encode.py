"""Turning Python arguments into what the C API takes, refusing bad ones before any call."""
from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any, Mapping, Optional, Union

from .errors import ArgumentError

Delay = Union[float, int, timedelta]
_MAX_DELAY_MS = 2**63 - 1


def params_json(params: Optional[Mapping[str, Any]]) -> bytes:
    """params as one compact UTF-8 JSON object; None and {} give b"{}"."""
    if params is None:
        return b"{}"
    if not isinstance(params, Mapping):
        raise ArgumentError(f"params must be a dict (a JSON object), not {type(params).__name__}")
    try:
        text = json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError) as e:  # unserialisable value, NaN, circular reference, lone surrogate
        raise ArgumentError(f"params are not JSON-serialisable: {e}") from None


def name(value: object, what: str) -> bytes:
    """A name, id or trace as UTF-8 bytes for a C string (no NUL, which C would silently cut at)."""
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ArgumentError(f"{what} {value!r} contains a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ArgumentError(f"{what} {value!r} is not valid Unicode: {e}") from None


def optional_name(value: Optional[str], what: str) -> Optional[bytes]:
    return None if value is None else name(value, what)


def delay_ms(delay: Delay) -> int:
    """A delay in seconds (int, float) or a timedelta, as whole milliseconds (rounded to the nearest)."""
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise ArgumentError(f"delay must be seconds (int or float) or a timedelta, not {type(delay).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ArgumentError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
    ms = round(seconds * 1000)
    if ms > _MAX_DELAY_MS:
        raise ArgumentError(f"delay {delay!r} is too large")
    return ms
