"""Publisher: one connection to the broker of a config file."""
from __future__ import annotations

import os
import weakref
from types import TracebackType
from typing import Any, Mapping, Optional, Type

from . import _encode
from ._native import Native, PathArg
from .batch import Batch
from .errors import ClosedError

DEFAULT_CONFIG = "/etc/ebats/ebats.yaml"


def config_path(config: Optional[PathArg] = None) -> str:
    """The config to open: `config`, else $EBATS_CONFIG, else /etc/ebats/ebats.yaml."""
    return os.fspath(config or os.environ.get("EBATS_CONFIG") or DEFAULT_CONFIG)


def _close_in_opener(close: Any, handle: int, pid: int) -> None:
    """The finalizer of a publisher's handle: closes it in the process that opened it. A child made by fork()
    only forgets its copy: closing it would wait for the parent's threads, which the child does not have
    (it hung at exit), and would shut the parent's connection down from the child."""
    if os.getpid() == pid:
        close(handle)


class Publisher:
    """Publishes events and creates tasks; each call returns once the message is durable.

    Not thread-safe: use one Publisher per thread. Close it (or use `with`) to free the connection.
    Not shared across fork(): a child opens its own (the default publisher does so by itself); the parent's,
    used in the child, raises ClosedError.
    """

    def __init__(self, config: Optional[PathArg] = None, library: Optional[PathArg] = None) -> None:
        """Opens the broker named in the config (`config`, $EBATS_CONFIG or /etc/ebats/ebats.yaml) through
        libebats (`library`, $EBATS_LIBRARY or libebats.so.0). Raises ConfigError or LibraryError."""
        self._native = Native(library)
        self.config = config_path(config)
        handle = self._native.open_publisher(_encode.name(self.config, "config path"))
        self._handle: Optional[int] = handle
        self._pid = os.getpid()
        self._batches: "weakref.WeakSet[Batch]" = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _close_in_opener, self._native.lib.ebats_publisher_close, handle,
                                           self._pid)

    @property
    def library_version(self) -> str:
        """The loaded libebats' version, e.g. "0.1.0"."""
        return self._native.version

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def opened_by(self) -> int:
        """The id of the process that opened it: the only one that may use it."""
        return self._pid

    def close(self) -> None:
        """Drops the batches not committed and closes the connection; closing twice is fine."""
        for batch in list(self._batches):
            batch.close()
        self._handle = None
        self._finalizer()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def _open_handle(self) -> int:
        if self._handle is None:
            raise ClosedError(f"the publisher of '{self.config}' is closed")
        if os.getpid() != self._pid:
            raise ClosedError(f"the publisher of '{self.config}' was opened by process {self._pid} before a fork();"
                              " open a new Publisher in this process")
        return self._handle

    def publish(self, event: str, params: Optional[Mapping[str, Any]] = None, *, id: Optional[str] = None,
                trace: Optional[str] = None) -> str:
        """Publishes `event` with `params` (a JSON object; None = {}); returns the event id.

        id: the event's id, a lowercase UUID: publishing again with the same id is idempotent.
        trace: a correlation id (<= 128 bytes) carried into its tasks and their result records.
        """
        handle = self._open_handle()
        return self._native.event_call(self._native.lib.ebats_publish_event_opts, handle, event, params, id, trace)

    def create_task(self, topic: str, name: str, params: Optional[Mapping[str, Any]] = None, *,
                    delay: _encode.Delay = 0, trace: Optional[str] = None) -> str:
        """Creates task `name` on `topic` directly (no event), due after `delay` (seconds, or a timedelta;
        0 = now); returns the task id."""
        handle = self._open_handle()
        return self._native.task_call(self._native.lib.ebats_enqueue_task_opts, handle, topic, name, params, delay,
                                      trace)

    def batch(self) -> Batch:
        """A new, empty batch: `with p.batch() as b:` commits on normal exit and drops it on an exception."""
        batch = Batch(self._native, self._open_handle(), self)
        self._batches.add(batch)
        return batch
