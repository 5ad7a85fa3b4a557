"""Giving memory the peer no longer uses back to the system (Linux; a no-op elsewhere).

A peer on a Pi lives next to other peers and its IPFS node, so freed memory should leave the process:
- glibc keeps freed heap memory (weight-sized blocks freed by a training round) for reuse and returns it only
  from the top of each heap; malloc_trim(0) returns every free page of every arena (the worker threads').
- a TensorFlow Lite model file is mapped read-only: the runtime reads the variables' initial values from it
  once (the CALL_ONCE init), and those pages would count towards the peer's resident memory for good.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from functools import cache
from pathlib import Path

MADV_DONTNEED = 4  # <sys/mman.h>, the same number on every Linux architecture


@cache
def _libc() -> ctypes.CDLL | None:
    # the symbols of the running process, libc's among them (no `ldconfig` run, unlike find_library)
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Return the free pages of the C heap to the system (glibc's malloc_trim). False where there is no
    glibc (musl, macOS): nothing is released there."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def read_only_mappings(path: Path) -> list[tuple[int, int]]:
    """(start, end) of this process's mappings of `path` that nobody can write through (r-- only)."""
    target = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            perms = fields[1] if len(fields) == 6 else ""
            if perms.startswith("r") and "w" not in perms and fields[5].strip() == target:
                start, end = (int(part, 16) for part in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def drop_file_pages(path: Path) -> int:
    """Unmap the resident pages of this process's read-only mappings of `path`; returns the bytes advised.

    Safe for read-only mappings only: a page touched again is read back from the page cache (or the file).
    Returns 0 where /proc/self/maps or madvise is missing.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "madvise") or not Path("/proc/self/maps").is_file():
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for start, end in read_only_mappings(path):
        if start % mmap.PAGESIZE == 0 and libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            advised += end - start
    return advised


def resident_kb(path: Path | None = None) -> int:
    """Resident kB of this process's mappings of `path` (from /proc/self/smaps), or of the whole process
    (VmRSS)."""
    if path is None:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    target, total, inside = os.path.realpath(path), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            inside = len(fields) == 6 and fields[5] == target
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total
