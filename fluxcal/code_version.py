"""Which code made a calibration: the fluxcal version and, from a git checkout, the commit.

A snapshot records it so a result can be traced to (and reproduced with) the exact source.
The package version alone does not change between commits, so the commit is added when the
installed package is the working tree of a git checkout (an editable install) and `git` is
available, with whether tracked files had uncommitted changes. Anything else (no git, a
wheel in site-packages, a broken repository, a slow filesystem) simply leaves the commit out:
recording provenance must never stop a calibration from being saved.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import fluxcal

_GIT_TIMEOUT_S = 5.0


@functools.cache
def code_version() -> dict[str, str | bool]:
    """`{"fluxcal": version}`, plus `git_commit` and `git_dirty` from a git checkout.

    Computed once per process: the code a process runs is the code it imported at start,
    even if the checkout changes later.
    """
    version: dict[str, str | bool] = {"fluxcal": fluxcal.__version__}
    source = Path(fluxcal.__file__).resolve().parent.parent
    top = _git(source, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source:
        return version  # not a checkout, or a checkout that merely contains this install
    commit = _git(source, "rev-parse", "HEAD")
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    if commit:
        version["git_commit"] = commit
        if status is not None:
            version["git_dirty"] = bool(status)
    return version


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
