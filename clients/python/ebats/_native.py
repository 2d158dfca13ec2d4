"""ctypes binding of libebats' C producer API (ebats/publisher_c.h)."""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Type, Union

from . import _encode
from .errors import ConfigError, EbatsError, LibraryError, PublishError

PathArg = Union[str, "os.PathLike[str]"]
DEFAULT_LIBRARY = "libebats.so.0"
MIN_C_API_VERSION = 1

_p = ctypes.c_void_p  # opaque handles: ebats_publisher*, ebats_options*, ebats_batch*
_err = ctypes.POINTER(ctypes.c_void_p)  # char **errptr
_s, _size, _u64, _id = ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_char_p

_SIGNATURES = {
    "ebats_version": (ctypes.c_char_p, []),
    "ebats_c_api_version": (ctypes.c_int, []),
    "ebats_publisher_open": (ctypes.c_int, [_s, ctypes.POINTER(_p), _err]),
    "ebats_publisher_close": (None, [_p]),
    "ebats_options_new": (_p, []),
    "ebats_options_free": (None, [_p]),
    "ebats_options_set_event_id": (ctypes.c_int, [_p, _s, _err]),
    "ebats_options_set_trace_id": (ctypes.c_int, [_p, _s, _err]),
    "ebats_options_set_delay_ms": (ctypes.c_int, [_p, _u64, _err]),
    "ebats_publish_event_opts": (ctypes.c_int, [_p, _s, _s, _size, _p, _id, _err]),
    "ebats_enqueue_task_opts": (ctypes.c_int, [_p, _s, _s, _s, _size, _p, _id, _err]),
    "ebats_batch_new": (_p, [_p]),
    "ebats_batch_free": (None, [_p]),
    "ebats_batch_add_event": (ctypes.c_int, [_p, _s, _s, _size, _p, _id, _err]),
    "ebats_batch_add_task": (ctypes.c_int, [_p, _s, _s, _s, _size, _p, _id, _err]),
    "ebats_batch_size": (_size, [_p]),
    "ebats_batch_commit": (ctypes.c_int, [_p, _err]),
    "ebats_free_error": (None, [ctypes.c_void_p]),
}


def library_path(library: Optional[PathArg] = None) -> str:
    """The library to load: `library`, else $EBATS_LIBRARY, else libebats.so.0 (found by the dynamic loader)."""
    return os.fspath(library or os.environ.get("EBATS_LIBRARY") or DEFAULT_LIBRARY)


class Native:
    """libebats loaded with every call's signature declared."""

    def __init__(self, library: Optional[PathArg] = None) -> None:
        self.path = library_path(library)
        try:
            self.lib = ctypes.CDLL(self.path)
        except OSError as e:
            raise LibraryError(f"cannot load libebats from '{self.path}' ({e}); pass library=... "
                               "or set EBATS_LIBRARY to the path of libebats.so") from None
        for name, (restype, argtypes) in _SIGNATURES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                raise LibraryError(f"'{self.path}' has no {name}: not libebats, or too old") from None
            fn.restype, fn.argtypes = restype, argtypes
        api = self.lib.ebats_c_api_version()
        if api < MIN_C_API_VERSION:
            raise LibraryError(f"'{self.path}' implements C API version {api}; "
                               f"this module needs {MIN_C_API_VERSION} or later")
        self.version: str = self.lib.ebats_version().decode()

    def open_publisher(self, config: bytes) -> int:
        """ebats_publisher_open; raises ConfigError with the library's message."""
        handle = ctypes.c_void_p()
        self.call(ConfigError, self.lib.ebats_publisher_open, config, ctypes.byref(handle))
        return int(handle.value or 0)

    def call(self, error: Type[EbatsError], fn: Callable[..., int], *args: object) -> None:
        """Calls fn(*args, errptr); on -1 raises `error` with the library's message verbatim."""
        err = ctypes.c_void_p()
        if fn(*args, ctypes.byref(err)) == 0:
            return
        if not err.value:
            raise error(f"{fn.__name__} failed (out of memory for its message)")
        try:
            message = ctypes.string_at(err.value).decode("utf-8", "replace")
        finally:
            self.lib.ebats_free_error(err.value)
        raise error(message)

    def call_id(self, error: Type[EbatsError], fn: Callable[..., int], *args: object) -> str:
        """call() for the calls that end in `char id_out[37]`: returns the id."""
        out = ctypes.create_string_buffer(37)
        self.call(error, fn, *args, out)
        return out.value.decode("ascii")

    @contextmanager
    def options(self, error: Type[EbatsError], event_id: Optional[bytes] = None, trace: Optional[bytes] = None,
                delay_ms: int = 0) -> Iterator[Optional[int]]:
        """An ebats_options handle with what is set, or None (NULL) when nothing is; freed on exit."""
        if event_id is None and trace is None and delay_ms == 0:
            yield None
            return
        handle = self.lib.ebats_options_new()
        if not handle:
            raise MemoryError("ebats_options_new: out of memory")
        try:
            if event_id is not None:
                self.call(error, self.lib.ebats_options_set_event_id, handle, event_id)
            if trace is not None:
                self.call(error, self.lib.ebats_options_set_trace_id, handle, trace)
            if delay_ms:
                self.call(error, self.lib.ebats_options_set_delay_ms, handle, delay_ms)
            yield handle
        finally:
            self.lib.ebats_options_free(handle)

    def event_call(self, fn: Callable[..., int], handle: int, event: str, params: Optional[Mapping[str, Any]],
                   event_id: Optional[str], trace: Optional[str]) -> str:
        """fn(handle, name, json, len, options, id_out, errptr) for an event (publish or batch add); its id."""
        name, body = _encode.name(event, "event"), _encode.params_json(params)
        with self.options(PublishError, _encode.optional_name(event_id, "event id"),
                          _encode.optional_name(trace, "trace")) as options:
            return self.call_id(PublishError, fn, handle, name, body, len(body), options)

    def task_call(self, fn: Callable[..., int], handle: int, topic: str, task: str,
                  params: Optional[Mapping[str, Any]], delay: _encode.Delay, trace: Optional[str]) -> str:
        """fn(handle, topic, task, json, len, options, id_out, errptr) for a task (enqueue or batch add); its id."""
        t, name, body = _encode.name(topic, "topic"), _encode.name(task, "task"), _encode.params_json(params)
        with self.options(PublishError, None, _encode.optional_name(trace, "trace"),
                          _encode.delay_ms(delay)) as options:
            return self.call_id(PublishError, fn, handle, t, name, body, len(body), options)
