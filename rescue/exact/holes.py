"""Sparse files: find their data extents, and punch the holes back into a restored copy.

duplicity restores a sparse file fully allocated: a 1 GiB image holding 3 MiB of data takes
1 GiB, which may not fit the disk it came from. The extents come from SEEK_DATA/SEEK_HOLE at
backup time. A hole is punched only where the restored bytes are zeros, so a file that changed
between the records and the backup can never lose data to a stale record.
"""

from __future__ import annotations

import ctypes
import errno
import os

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_CHUNK = 1024 * 1024
_ZEROS = bytes(_CHUNK)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]

Extents = list[tuple[int, int]]  # (offset, length) of each data run, in order


def maybe_sparse(st: os.stat_result) -> bool:
    """Whether a regular file can hold holes: fewer blocks allocated than its size needs."""
    return st.st_size > 0 and st.st_blocks * 512 < st.st_size


def data_extents(fd: int, size: int) -> Extents:
    """The data runs of an open file, by SEEK_DATA/SEEK_HOLE."""
    extents: Extents = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, min(end, size) - start))
        offset = end
    return extents


def holes_of(extents: Extents, size: int) -> Extents:
    """The complement of the data runs within size: where the holes are."""
    holes: Extents = []
    offset = 0
    for start, length in extents:
        if start > offset:
            holes.append((offset, start - offset))
        offset = max(offset, start + length)
    if offset < size:
        holes.append((offset, size - offset))
    return holes


def punch(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def punch_zeros(fd: int, holes: Extents, upto: int | None = None) -> int:
    """Punch each recorded hole (up to offset `upto`) where the file reads as zeros there.

    Returns the bytes deallocated. A range that holds data is left alone chunk by chunk, so a
    stale record costs sparseness, never data. OSError(EOPNOTSUPP) where the file system cannot.
    """
    punched = 0
    for offset, length in holes:
        end = offset + length if upto is None else min(offset + length, upto)
        for start, stop in _data_within(fd, offset, end):
            position = start
            while position < stop:
                size = min(_CHUNK, stop - position)
                if os.pread(fd, size, position) == _ZEROS[:size]:
                    punch(fd, position, size)
                    punched += size
                position += size
    return punched


def _data_within(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The allocated runs of [start, end): a range already a hole costs no read."""
    runs = []
    position = start
    while position < end:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        runs.append((data, hole))
        position = hole
    return runs
