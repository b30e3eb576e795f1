"""Reading a file a user names (``sms_flow/_textfile.py``): regular files only, at most 1 MiB,
never a device, a FIFO or an endless file read without bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sms_flow._textfile import FILE_MAX_BYTES, NoSuchFile, UnreadableFile, read_text


def test_a_regular_file_up_to_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_bytes(b"a" * FILE_MAX_BYTES)
    assert len(read_text(path)) == FILE_MAX_BYTES
    assert FILE_MAX_BYTES == 1 << 20


def test_one_byte_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a" * (FILE_MAX_BYTES + 1))
    with pytest.raises(UnreadableFile, match="larger than 1,048,576 bytes"):
        read_text(path)


def test_an_endless_device_is_refused_before_it_is_read() -> None:
    with pytest.raises(UnreadableFile, match=r"not a regular file \(it is a character device\)"):
        read_text(Path("/dev/zero"))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile, match=r"it is a FIFO"):
        read_text(fifo)  # blocks forever if the FIFO is opened for reading without O_NONBLOCK


def test_missing_directory_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(NoSuchFile, match="no such file"):
        read_text(tmp_path / "nope.yaml")
    with pytest.raises(UnreadableFile, match="is a directory"):
        read_text(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UnreadableFile, match=r"not UTF-8 text \(byte 9\)"):
        read_text(latin)
