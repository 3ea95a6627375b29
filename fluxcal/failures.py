"""The one place where a command's exception becomes one line on stderr and an exit code.

Every `fluxcal` command is wrapped by `one_line_errors`, so a bad file, a missing or damaged
store, a full disk or an unreachable Prefect server ends with `error: <what>: <why>` and exit
code 1 instead of a traceback. Anything else is a bug in fluxcal: it gets one line too, marked
as such, with exit code 70 (sysexits EX_SOFTWARE), and FLUXCAL_TRACEBACK=1 re-raises it for a
bug report. Exception types of libraries are matched only once their module is loaded (a type
that was never imported cannot have been raised), so this module costs no start-up time.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer

#: Exit code of bad input, a bad environment or a failed run.
EXIT_ERROR = 1
#: Exit code of an unexpected exception (a bug): sysexits.h EX_SOFTWARE.
EXIT_BUG = 70

#: (module, attribute) of library exceptions that report bad input or a bad environment.
_LIBRARY_ERRORS = (
    ("fluxcal.snapshots.errors", "StoreError"),
    ("yaml", "YAMLError"),
    ("ruamel.yaml.error", "YAMLError"),
    ("jsonschema", "ValidationError"),
    ("httpx", "TransportError"),
)
#: Built-in exceptions the code base raises for bad input (unknown node, bad settings, ...).
_BUILTIN_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, RuntimeError)

#: Exceptions that already end a command cleanly (typer's Exit subclasses RuntimeError).
_PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException)

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a Typer command so that it never ends in a traceback (see the module docstring).

    Typer reads the wrapped function's signature (it follows `__wrapped__`), so the options
    are unchanged.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except Exception as error:
            if _is_expected(error):
                fail(describe(error))
            if os.environ.get("FLUXCAL_TRACEBACK"):
                raise
            fail(
                f"internal error, please report it (FLUXCAL_TRACEBACK=1 shows where): "
                f"{type(error).__name__}: {describe(error)}",
                code=EXIT_BUG,
            )

    return wrapper


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `error: message` on stderr and end the command with `code`."""
    typer.echo(f"error: {_flat(message)}", err=True)
    raise typer.Exit(code=code)


def describe(error: BaseException) -> str:
    """One line naming the thing that went wrong and why."""
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
        if error.filename2 is not None:
            text += f" ({error.filename2})"
    elif isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])  # str(KeyError) quotes its message
    else:
        text = str(error) or type(error).__name__
    if _is_instance(error, ("httpx", "TransportError")):
        text = f"Prefect server unreachable at {_prefect_url(error)}: {text}"
    return _flat(text)


def _is_expected(error: BaseException) -> bool:
    return isinstance(error, _BUILTIN_ERRORS) or any(
        _is_instance(error, name) for name in _LIBRARY_ERRORS
    )


def _is_instance(error: BaseException, name: tuple[str, str]) -> bool:
    module = sys.modules.get(name[0])
    kind = getattr(module, name[1], None) if module is not None else None
    return isinstance(kind, type) and isinstance(error, kind)


def _prefect_url(error: Any) -> str:
    try:
        return str(error.request.url)
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return os.environ.get("PREFECT_API_URL", "the configured PREFECT_API_URL")


def _flat(text: str) -> str:
    return " ".join(text.split())
