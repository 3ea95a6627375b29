"""Exceptions raised by the snapshot store.

Messages are a single line because the CLI shows them to users verbatim.
"""


class StoreError(Exception):
    """Base class: anything that stops a store operation (missing store, lock timeout, ...)."""


class UnknownVersion(StoreError):
    """The requested version does not exist in the store."""


class DamagedSnapshot(StoreError):
    """A version file exists but cannot be read or fails its checksum."""
