"""Giving memory the peer no longer uses back to the system (Linux; a no-op elsewhere).

A peer on a Pi lives next to other peers and its IPFS node, so what a round no longer uses should leave the
process:
- glibc keeps freed heap memory (weight-sized blocks freed by a training round) for reuse and returns it only
  from the top of each heap; malloc_trim(0) returns every free page of every arena (the worker threads').
- mapped files stay resident once touched: a TensorFlow Lite model file, whose variables' initial values
  the runtime reads once (the CALL_ONCE init), and the shared libraries, most of whose pages only loading
  and start-up read (relocation tables, static initialisers, ops the model never runs; 11 MB of the TFLite
  runtime's 12 MB in a peer). Unmapping the pages of a mapping nobody wrote to loses nothing: a page touched
  again is mapped back from the page cache. The kernel would drop them itself under memory pressure; doing it
  after each round makes the resident memory say what a round needs, which decides how many peers fit on a Pi.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MADV_DONTNEED = 4  # <sys/mman.h>, the same number on every Linux architecture
SMAPS = Path("/proc/self/smaps")


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/self/maps with the smaps figures this module uses."""

    start: int
    end: int
    perms: str
    path: str  # "" for anonymous memory, "[heap]", "[stack]"... for the kernel's names
    rss_kb: int
    # pages of a private file mapping that were written to (copy-on-write) count here; None: smaps did not say
    anonymous_kb: int | None

    @property
    def droppable(self) -> bool:
        """A file mapping nobody can write through and nobody wrote to: its pages are the file's."""
        return (
            self.path.startswith("/")
            and self.perms.startswith("r")
            and "w" not in self.perms
            and self.anonymous_kb == 0
        )


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


def mappings() -> list[Mapping]:
    """This process's mappings (/proc/self/maps) with their resident and copy-on-write kB from
    /proc/self/smaps ([] where there is no maps file).

    A mapping smaps does not list with the same address range gets rss 0 and anonymous None: not droppable.
    That is what keeps an emulator safe: qemu-user before 8.1 rewrites /proc/self/maps for its guest but shows
    the host's smaps (other addresses), and unmapping host addresses in the guest corrupted its memory (an
    armv7 peer died with "stack smashing detected").
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    try:
        smaps = SMAPS.read_text()
    except OSError:
        smaps = ""
    figures: dict[str, tuple[int, int | None]] = {}
    span, rss, anonymous = "", 0, 0
    for line in smaps.splitlines():
        fields = line.split(maxsplit=1)
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            if span:
                figures[span] = (rss, anonymous)
            span, rss, anonymous = fields[0], 0, 0
        elif fields and fields[0] == "Rss:":
            rss = int(fields[1].split()[0])
        elif fields and fields[0] == "Anonymous:":
            anonymous = int(fields[1].split()[0])
    if span:
        figures[span] = (rss, anonymous)
    found: list[Mapping] = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        rss_kb, anonymous_kb = figures.get(fields[0], (0, None))
        path = fields[5] if len(fields) == 6 else ""
        found.append(Mapping(start, end, fields[1], path, rss_kb, anonymous_kb))
    return found


def drop_file_pages(path: Path | None = None) -> int:
    """Unmap the resident pages of this process's droppable mappings of `path`, or of every file (shared
    libraries among them) when `path` is None; returns the bytes advised.

    Only mappings nobody can write through and nobody wrote to are touched, so nothing is lost: a page used
    again is mapped back from the page cache (or read from the file). Returns 0 without smaps or madvise.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "madvise"):
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = None if path is None else os.path.realpath(path)
    advised = 0
    for mapping in mappings():
        if not mapping.droppable or not mapping.rss_kb or (target is not None and mapping.path != target):
            continue
        size = mapping.end - mapping.start
        if mapping.start % mmap.PAGESIZE == 0 and libc.madvise(mapping.start, size, MADV_DONTNEED) == 0:
            advised += size
    return advised


def release_memory() -> None:
    """What the daemon calls between rounds: the freed heap back to the system, file pages unmapped."""
    release_freed_memory()
    drop_file_pages()


def resident_kb(path: Path | None = None) -> int:
    """Resident kB of this process's mappings of `path` (from /proc/self/smaps), or of the whole process
    (VmRSS)."""
    if path is None:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    target = os.path.realpath(path)
    return sum(m.rss_kb for m in mappings() if m.path == target)
