"""Errors meant for users, and the command-line wrapper that prints them as one line.

A `UserError` is a failure the user can fix without reading code: a damaged input file, a bad
config value, a damaged checkpoint, a workdir held by another run. Command-line entry points
run their `main` through `run_cli`, which prints such an error as

    ERROR: <message naming the file / key / value>
    hint: <what to do>

on stderr and exits with status 2, instead of a traceback. Anything else (a bug) keeps its
traceback. `--verbose` on the command line (removed before the entry point parses its flags)
or `MIM4D_VERBOSE=1` in the environment shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

EXIT_USER_ERROR = 2
VERBOSE_FLAG = "--verbose"
VERBOSE_ENV = "MIM4D_VERBOSE"


class UserError(Exception):
    """Base class: `str(error)` is the one-line message, `hint` an optional next step."""

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = self.default_hint if hint is None else hint


class BadInputError(UserError, ValueError):
    """An input file (data shard, weights file) is damaged or holds unusable values."""

    default_hint = "regenerate or re-download the named file; the rest of it was not used"


class MissingInputError(UserError, FileNotFoundError):
    """A named input (dataset directory, shard, table, weights file) does not exist."""

    default_hint = "check the path; a dataset directory is data_prep.convert_nuscenes's --out"


class DatasetError(BadInputError):
    """A converted dataset that cannot feed this run (damaged, empty, too old, other cameras)."""

    default_hint = "re-convert the dataset with data_prep.convert_nuscenes (docs/converting.md)"


class ConfigError(UserError, ValueError):
    """A config value outside its allowed range, or an override that is not allowed here."""

    default_hint = "fix the named key (docs/configs.md lists every key and its range)"


class CheckpointDamagedError(UserError):
    """A checkpoint step whose files are missing or do not match their recorded checksums."""


class WorkdirLockedError(UserError):
    """The workdir is held by another training run."""


def verbose_requested(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return VERBOSE_FLAG in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def format_error(error: UserError) -> str:
    lines = [f"ERROR: {error}"]
    if error.hint:
        lines.append(f"hint: {error.hint}")
    return "\n".join(lines)


def run_cli(main: Callable[..., Any], argv: list[str] | None = None) -> Any:
    """Calls `main()` (or `main(argv)` when `argv` is given) and turns a `UserError` into
    its one-line message and exit status 2; `--verbose` is taken out of `sys.argv` / `argv`
    first, so the entry point's own flag parser never sees it."""
    verbose = verbose_requested(sys.argv if argv is None else argv)
    sys.argv = [a for a in sys.argv if a != VERBOSE_FLAG]
    try:
        if argv is None:
            return main()
        return main([a for a in argv if a != VERBOSE_FLAG])
    except UserError as error:
        if verbose:
            traceback.print_exc()
        print(format_error(error), file=sys.stderr, flush=True)
        if not verbose:
            print(
                f"(run with {VERBOSE_FLAG} or {VERBOSE_ENV}=1 for the traceback)",
                file=sys.stderr,
                flush=True,
            )
        sys.exit(EXIT_USER_ERROR)


class OutputError(UserError):
    """An output file or folder that cannot be written (read-only, missing permissions)."""

    default_hint = "choose a writable output path"
