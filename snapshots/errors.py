"""Exceptions and warnings raised by the snapshot store.

Messages are a single line because the CLI shows them to users verbatim.
"""


class StoreError(Exception):
    """Base class: anything that stops a store operation (missing store, lock timeout, ...)."""


class UnknownVersion(StoreError):
    """The requested version does not exist in the store."""


class DamagedSnapshot(StoreError):
    """A version file exists but cannot be read, fails its checksum or holds forged content."""


class StoreWarning(UserWarning):
    """Something in the store was ignored or repaired so the operation could go on.

    A warning, not an error, because refusing would block calibrations over a file that is
    not needed (a stray FIFO, a damaged old version, a stale index). Filter on this class to
    log or escalate them.
    """
