"""Batch: many events and tasks published by one commit."""
from __future__ import annotations

import os
import weakref
from types import TracebackType
from typing import Any, Mapping, Optional, Type

from . import _encode
from ._native import Native
from .errors import ClosedError, PublishError


class Batch:
    """Events and tasks added one by one and published by commit().

    SQLite commits them in one transaction (all or nothing). RabbitMQ confirms each message: when commit()
    fails some may have been published; add the same messages again (same event ids) and commit again.
    Made by Publisher.batch(); it belongs to that publisher and its thread.
    """

    def __init__(self, native: Native, publisher_handle: int, owner: object) -> None:
        self._native = native
        self._owner = owner  # keeps the publisher (whose handle this batch uses) alive while the batch is
        handle = native.lib.ebats_batch_new(publisher_handle)
        if not handle:
            raise MemoryError("ebats_batch_new: out of memory")
        self._handle: Optional[int] = handle
        self._finalizer = weakref.finalize(self, native.lib.ebats_batch_free, handle)

    def _open_handle(self) -> int:
        if self._handle is None:
            raise ClosedError("the batch is closed (its with block ended, or its publisher was closed)")
        opener = getattr(self._owner, "opened_by", os.getpid())
        if opener != os.getpid():
            raise ClosedError(f"the batch belongs to a publisher opened by process {opener} before a fork();"
                              " open a new Publisher in this process")
        return self._handle

    def add_event(self, event: str, params: Optional[Mapping[str, Any]] = None, *, id: Optional[str] = None,
                  trace: Optional[str] = None) -> str:
        """Checks and adds an event (as Publisher.publish); returns its id. A refused one leaves the batch
        as it was."""
        handle = self._open_handle()
        return self._native.event_call(self._native.lib.ebats_batch_add_event, handle, event, params, id, trace)

    def add_task(self, topic: str, name: str, params: Optional[Mapping[str, Any]] = None, *,
                 delay: _encode.Delay = 0, trace: Optional[str] = None) -> str:
        """Checks and adds a task (as Publisher.create_task); returns its id. A refused one leaves the batch
        as it was."""
        handle = self._open_handle()
        return self._native.task_call(self._native.lib.ebats_batch_add_task, handle, topic, name, params, delay,
                                      trace)

    def __len__(self) -> int:
        """How many messages wait for commit()."""
        return int(self._native.lib.ebats_batch_size(self._open_handle()))

    def commit(self) -> None:
        """Publishes everything added and empties the batch (also when it fails); returns once durable."""
        self._native.call(PublishError, self._native.lib.ebats_batch_commit, self._open_handle())

    def close(self) -> None:
        """Drops what was not committed and frees the batch; closing twice is fine."""
        self._handle = None
        self._finalizer()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.close()
