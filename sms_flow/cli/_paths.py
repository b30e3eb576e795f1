"""Paths a command will write to, checked before it starts: the journal and the report.

A run finds out that it cannot write its report only at the end, after it pushed: so
``run`` and ``drill`` check both paths first, and refuse (exit 2) one that is a directory,
another kind of file than a regular one, or in a place where nothing can be written. A place
is tried by creating (and at once removing) a file in it, which is what counts, whoever runs
the command (``root`` passes permission checks but not a read-only mount).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from sms_flow.errors import InputError

__all__ = ["check_readable_file", "check_writable_file"]


def check_writable_file(path: Path, what: str, *, hint: str, folder: bool = False) -> None:
    """Refuse ``path`` (``what`` names it: "journal", "report") unless a file can be written there.

    The path may exist (a regular file that can be opened for writing) or not (its nearest
    existing folder must be a folder in which a file can be created; missing folders below it
    are created when the file is written). ``folder``: the folder must take new files even
    when the file exists (SQLite writes ``-wal`` and ``-shm`` files beside a journal).
    Raises :class:`~sms_flow.errors.InputError` saying what is wrong, ending with ``hint``.
    """
    shown = f"{what} path {path}"
    try:
        mode: int | None = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        place = _nearest_existing(path.parent)
        raise InputError(f"{shown} cannot be used: {place} is not a directory; {hint}") from None
    except OSError as exc:  # a folder on the way cannot be searched
        raise InputError(f"{shown} cannot be used: {_reason(exc)}; {hint}") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise InputError(f"{shown} is a directory, not a file; {hint}")
        if not stat.S_ISREG(mode):
            raise InputError(f"{shown} is not a regular file; {hint}")
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            raise InputError(f"{shown} cannot be written: {_reason(exc)}; {hint}") from None
        if not folder:
            return
    place = _nearest_existing(path.parent)
    if not place.is_dir():
        raise InputError(f"{shown} cannot be used: {place} is not a directory; {hint}")
    try:
        fd, probe = tempfile.mkstemp(dir=place, prefix=".sms-flow-probe-")
    except OSError as exc:
        raise InputError(
            f"{shown} cannot be used: nothing can be written in {place} ({_reason(exc)}); {hint}"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_readable_file(path: Path, what: str, *, hint: str) -> None:
    """Refuse ``path`` unless it is an existing regular file (``what`` names it)."""
    shown = f"{what} {path}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"no {what} at {path}; {hint}") from None
    except OSError as exc:
        raise InputError(f"{shown} cannot be used: {_reason(exc)}; {hint}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{shown} is a directory, not a {what} file; {hint}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{shown} is not a regular file; {hint}")


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (as anything)."""
    current = folder.absolute()
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    return current


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
