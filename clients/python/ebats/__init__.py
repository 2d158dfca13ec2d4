"""Publish ebats events and create tasks from Python, through libebats' C API (ctypes).

    import ebats
    with ebats.Publisher("/etc/ebats/ebats.yaml") as p:
        event_id = p.publish("order_paied", {"order_id": 10042})

See docs/PYTHON.md in the ebats repository.
"""
from typing import Optional

from .batch import Batch
from .default import Event, Task, configure
from .errors import ArgumentError, ClosedError, ConfigError, EbatsError, LibraryError, PublishError
from ._native import Native, PathArg
from .publisher import Publisher

__version__ = "0.1.0"
__all__ = ["Publisher", "Batch", "Event", "Task", "configure", "library_version", "EbatsError", "LibraryError",
           "ConfigError", "ClosedError", "ArgumentError", "PublishError"]


def library_version(library: Optional[PathArg] = None) -> str:
    """The version of libebats (`library`, $EBATS_LIBRARY or libebats.so.0), e.g. "0.1.0"; LibraryError if
    it cannot be loaded."""
    return Native(library).version
