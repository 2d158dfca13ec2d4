"""The exceptions of the ebats module; all derive from EbatsError."""


class EbatsError(Exception):
    """Base class: anything the ebats module or libebats refused or failed to do."""


class LibraryError(EbatsError):
    """libebats could not be loaded, or it is older than the C API this module needs."""


class ConfigError(EbatsError):
    """The publisher could not be opened (config file missing or invalid, broker unreachable)."""


class ClosedError(EbatsError):
    """The publisher or batch was used after close()."""


class ArgumentError(EbatsError, ValueError):
    """An argument refused before calling libebats (params not a JSON object, NUL in a name, negative delay)."""


class PublishError(EbatsError):
    """libebats refused or failed a publish, enqueue, batch add or commit; the message is the library's."""
