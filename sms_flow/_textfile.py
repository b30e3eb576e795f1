"""Reading a text file a user names (a statechart, a wave or drill file): bounded, regular files only.

:func:`read_text` reads at most :data:`FILE_MAX_BYTES` (1 MiB) and only from a regular file
(or a link to one): a device such as ``/dev/zero``, a FIFO or a directory is refused before
anything is read, and a larger file is refused after reading one byte past the cap, so that
neither an endless nor a huge file is ever read whole. The cap is far above what these files
hold: the default chart is about 11 KB, and a wave file naming the most ids a wave takes
(10,000, :data:`sms_flow.wave.spec.IDS_MAX`) about 400 KB.

It imports nothing heavy (no YAML, no pydantic): ``sms-flow check`` reads the default chart
through it. A problem is an :class:`UnreadableFile`, which each caller turns into its own
error (:class:`~sms_flow.errors.ChartError`, :class:`~sms_flow.errors.ConfigError`); it never
leaves the package.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["FILE_MAX_BYTES", "NoSuchFile", "UnreadableFile", "read_text"]

FILE_MAX_BYTES: Final = 1 << 20
"""The largest statechart, wave or drill file sms-flow reads: 1 MiB."""


class UnreadableFile(Exception):
    """Why a file cannot be read, in words to follow its name: ``f"{path}: {exc}"``."""


class NoSuchFile(UnreadableFile):
    """There is no file at the path."""


def read_text(path: Path, *, limit: int = FILE_MAX_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes.

    Raises :class:`UnreadableFile` saying what is wrong (:class:`NoSuchFile` when there is
    none): a directory or another kind of file that is not a regular one, more than ``limit``
    bytes, not UTF-8, or the operating system's error.
    """
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise NoSuchFile("no such file") from None
    except IsADirectoryError:
        raise UnreadableFile("is a directory, not a file") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UnreadableFile("is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"is not a regular file (it is {_kind(mode)})")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFile(
            f"is larger than {limit:,} bytes, the most sms-flow reads from such a file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"is not UTF-8 text (byte {exc.start})") from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
