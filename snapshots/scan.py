"""Which directory entries of a store are version files, and which are ignored and why.

A version file is a regular file named exactly `version_filename(n)` with 1 <= n <=
MAX_VERSION. Anything else that looks like one (a FIFO, a symbolic link that may lead out of
the store, a directory, `v0000001.h5` next to `v000001.h5`, a number too large to allocate
after) is set aside with a reason, so it is never opened and cannot block saves.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fsio import irregular_kind
from .validate import MAX_VERSION

_NAME_RE = re.compile(r"^v(\d+)\.h5$")
_MAX_DIGITS = len(str(MAX_VERSION))


def version_filename(version: int) -> str:
    return f"v{version:06d}.h5"


def parse_version_name(name: str) -> int | None:
    """The version a canonical, in-range file name stands for; None for anything else."""
    match = _NAME_RE.match(name)
    if match is None or len(match.group(1)) > _MAX_DIGITS:
        return None
    version = int(match.group(1))
    if not 1 <= version <= MAX_VERSION or version_filename(version) != name:
        return None
    return version


@dataclass
class Scan:
    versions: dict[int, Path] = field(default_factory=dict)
    #: file name -> why it was set aside (one line)
    ignored: dict[str, str] = field(default_factory=dict)
    #: every version number whose file name exists, as anything: never to be allocated again
    taken: set[int] = field(default_factory=set)


def scan_store(store: Path) -> Scan:
    """Classify the entries of `store` without opening any of them."""
    out = Scan()
    with os.scandir(store) as it:
        for entry in it:
            if _NAME_RE.match(entry.name) is None:
                continue
            version = parse_version_name(entry.name)
            if version is None:
                out.ignored[entry.name] = (
                    f"not a version file name (versions are v000001.h5 .. v{MAX_VERSION}.h5)"
                )
                continue
            out.taken.add(version)
            # DirEntry.is_file uses the type readdir already returned: no syscall per file
            if entry.is_file(follow_symlinks=False):
                out.versions[version] = Path(entry.path)
                continue
            try:
                kind = irregular_kind(Path(entry.path))
            except FileNotFoundError:  # removed since listed: nothing to ignore
                continue
            out.ignored[entry.name] = f"{kind}, not a regular file"
    return out
