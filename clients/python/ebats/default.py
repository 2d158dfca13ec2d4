"""The original PHP library's calls, Event(...).publish() and Task.create(...), on a default publisher.

The default publisher is the module's only global state: opened on first use from configure()'s arguments,
else $EBATS_CONFIG / $EBATS_LIBRARY, else the defaults. A lock serialises its use, so threads may share it.
A child made by fork() opens its own on first use (the parent's stays the parent's).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Optional, Tuple

from ._encode import Delay
from ._native import PathArg
from .publisher import Publisher

_lock = threading.RLock()
_settings: Tuple[Optional[PathArg], Optional[PathArg]] = (None, None)  # configure()'s config, library
_publisher: Optional[Publisher] = None


def _after_fork_in_child() -> None:
    """A lock held by another thread of the parent at fork() would stay held in the child for good."""
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def configure(config: Optional[PathArg] = None, library: Optional[PathArg] = None) -> None:
    """Sets the config and library of the default publisher; closes it if open (it reopens on next use)."""
    global _publisher, _settings
    with _lock:
        _settings = (config, library)
        if _publisher is not None:
            _publisher.close()
            _publisher = None


def _default_publisher() -> Publisher:
    """The default publisher, opened now if it is not yet (ConfigError, LibraryError)."""
    global _publisher
    with _lock:
        if _publisher is None or _publisher.closed or _publisher.opened_by != os.getpid():
            _publisher = Publisher(*_settings)  # after fork(): the parent's is forgotten, not closed
        return _publisher


class Event:
    """An event to publish, as in the original: Event("order_paied").set_options({"order_id": 1}).publish()."""

    def __init__(self, name: str, params: Optional[Mapping[str, Any]] = None) -> None:
        self.name = name
        self.params: Optional[Mapping[str, Any]] = params

    def set_options(self, params: Mapping[str, Any]) -> "Event":
        """Sets the event's params (a JSON object); returns the event, for chaining."""
        self.params = params
        return self

    def publish(self, *, id: Optional[str] = None, trace: Optional[str] = None) -> str:
        """Publishes it through the default publisher (see Publisher.publish); returns the event id."""
        with _lock:
            return _default_publisher().publish(self.name, self.params, id=id, trace=trace)


class Task:
    """Creating a task directly, as the original's Task::create."""

    @staticmethod
    def create(topic: str, name: str, params: Optional[Mapping[str, Any]] = None, delay: Delay = 0, *,
               trace: Optional[str] = None) -> str:
        """Creates task `name` on `topic` through the default publisher, due after `delay` seconds (or a
        timedelta); returns the task id."""
        with _lock:
            return _default_publisher().create_task(topic, name, params, delay=delay, trace=trace)
