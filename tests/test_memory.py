"""peer.memory on this (glibc, Linux) machine: freed heap pages and read-only file pages leave the process."""

from __future__ import annotations

import ctypes
import importlib.util
import mmap
from pathlib import Path
from typing import Any

import pytest

from peer.memory import drop_file_pages, mappings, release_freed_memory, resident_kb

MB = 1024 * 1024


def droppable(path: Path) -> list[tuple[int, int]]:
    target = str(path.resolve())
    return [(m.start, m.end) for m in mappings() if m.path == target and m.droppable]


REPO = Path(__file__).resolve().parents[1]


def test_dropped_pages_of_a_read_only_mapping_leave_the_process_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    content = bytes(range(256)) * (16 * MB // 256)
    path.write_bytes(content)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert bytes(mapped) == content  # every page touched
        assert resident_kb(path) > 15 * 1024
        assert len(droppable(path)) == 1
        assert drop_file_pages(path) >= len(content)
        assert resident_kb(path) < 1024
        assert bytes(mapped) == content  # read back from the file


def test_writable_mappings_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"\0" * MB)
    with path.open("r+b") as file, mmap.mmap(file.fileno(), 0) as mapped:
        mapped[:5] = b"dirty"
        assert droppable(path) == []
        assert drop_file_pages(path) == 0
        assert mapped[:5] == b"dirty"


def test_every_library_page_can_be_dropped_and_the_process_goes_on() -> None:
    import numpy as np

    assert float(np.arange(1000.0) @ np.arange(1000.0)) == 332833500.0  # numpy's code and BLAS resident
    numpy_lib = next(m.path for m in mappings() if "_multiarray_umath" in m.path and m.rss_kb)
    assert resident_kb(Path(numpy_lib)) > 512
    assert drop_file_pages() > 0  # every file: the libraries, Python's own among them
    assert resident_kb(Path(numpy_lib)) < 256
    assert float(np.arange(1000.0) @ np.arange(1000.0)) == 332833500.0  # mapped back as it runs


def test_pages_written_before_a_mapping_became_read_only_are_kept(tmp_path: Path) -> None:
    # the loader writes relocations into a library's private pages, then makes them read-only (RELRO):
    # dropping those pages would bring back the file's unrelocated bytes
    path = tmp_path / "blob"
    path.write_bytes(b"\0" * MB)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        mapped[:9] = b"relocated"
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        try:
            assert libc.mprotect(address, MB, mmap.PROT_READ) == 0
            (mapping,) = (m for m in mappings() if m.path == str(path.resolve()))
            assert mapping.perms.startswith("r--")
            assert mapping.anonymous_kb > 0
            assert droppable(path) == []
            drop_file_pages()
            assert mapped[:9] == b"relocated"
        finally:
            libc.mprotect(address, MB, mmap.PROT_READ | mmap.PROT_WRITE)


def test_a_smaps_that_disagrees_with_maps_drops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # qemu-user before 8.1 rewrites /proc/self/maps for its guest but shows the host's smaps: what smaps
    # calls a clean library may be the guest's heap or stack. Here it lies about an anonymous mapping.
    import peer.memory

    with mmap.mmap(-1, MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as anonymous:
        anonymous[:4] = b"kept"
        start = ctypes.addressof(ctypes.c_char.from_buffer(anonymous))
        listed = [m for m in mappings() if m.start <= start < m.end]
        assert listed
        assert listed[0].path == ""
        lying = tmp_path / "smaps"
        lying.write_text(
            f"{listed[0].start:x}-{listed[0].end:x} r--p 00000000 08:01 42 /usr/lib/liblie.so\n"
            "Rss:                1024 kB\nAnonymous:             0 kB\n"
        )
        monkeypatch.setattr(peer.memory, "SMAPS", lying)
        drop_file_pages()
        assert anonymous[:4] == b"kept"


def test_freed_heap_memory_goes_back_to_the_system() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 64 kB blocks come from the heap (below glibc's mmap threshold); the last one stays allocated, so the
    # freed ones are not at the top of the heap, where free() alone would return them
    blocks = [libc.malloc(64 * 1024) for _ in range(1024)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    for block in blocks[:-1]:
        libc.free(block)
    try:
        before = resident_kb()
        if not release_freed_memory():
            pytest.fail("no malloc_trim: this test expects glibc (Debian)")
        assert before - resident_kb() > 48 * 1024
    finally:
        libc.free(blocks[-1])


def load_footprint_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("peer_footprint", REPO / "benchmarks/peer_footprint.py")
    assert spec is not None
    assert spec.loader is not None
    footprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(footprint)
    return footprint


def test_the_footprint_benchmark_attributes_resident_memory_to_its_mappings(tmp_path: Path) -> None:
    footprint = load_footprint_benchmark()
    import numpy as np

    assert np.ones(1).sum() == 1  # numpy's libraries are mapped and used
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\1" * 4 * MB)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert sum(mapped[::4096]) == 1024  # one byte a page: every page resident
        got = footprint.smaps_breakdown(Path("/proc/self/smaps").read_text())
    assert got["tflite_model_file_mb"] >= 4.0  # and the models other tests in this process still map
    assert min(got["numpy_libs_mb"], got["anonymous_mb"], got["other_files_mb"]) > 1
    resident = sum(value for key, value in got.items() if key not in ("pss_mb", "uss_mb"))
    assert got["uss_mb"] <= got["pss_mb"] <= resident + 0.5


X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu vme sse2\n\n"


def test_the_footprint_benchmark_gives_an_emulated_arm64_peer_an_arm_cpuinfo(tmp_path: Path) -> None:
    """qemu-user 7.2 (Debian 12) shows an arm64 guest the host's x86 /proc/cpuinfo, on which the TFLite
    runtime's CPU detection segfaults: --image mounts a Pi 4's over it, with this machine's CPU count."""
    footprint = load_footprint_benchmark()
    host_cpus = footprint.possible_cpus(Path("/sys/devices/system/cpu/possible").read_text())
    assert [footprint.possible_cpus(text) for text in ("0\n", "0-1\n", "0-3,6\n")] == [1, 2, 7]
    assert footprint.emulation_args("linux/amd64", lambda: X86_CPUINFO, tmp_path, "x86_64") == []
    args = footprint.emulation_args("linux/arm64", lambda: X86_CPUINFO, tmp_path, "x86_64")
    standin = tmp_path / "cpuinfo-arm64"
    assert args == ["-e", "QEMU_CPU=cortex-a72", "-v", f"{standin}:/proc/cpuinfo:ro"]
    # what an arm64 kernel writes: one block per processor with the MIDR fields of the emulated CPU
    blocks = [
        dict(line.split(":", 1) for line in block.splitlines()) for block in standin.read_text().split("\n\n")
    ]
    processors = [{key.strip(): value.strip() for key, value in block.items()} for block in blocks[:-1]]
    assert [p["processor"] for p in processors] == [str(i) for i in range(host_cpus)]
    assert {(p["CPU implementer"], p["CPU part"], p["CPU architecture"]) for p in processors} == {
        ("0x41", "0xd08", "8")
    }
    # a qemu-user that emulates an ARM /proc/cpuinfo (8.2 and later) gets no stand-in
    arm = footprint.arm64_cpuinfo(2)
    assert footprint.emulation_args("linux/arm64", lambda: arm, tmp_path, "x86_64") == [
        "-e",
        "QEMU_CPU=cortex-a72",
    ]
    # nor does an arm64 machine running its own images
    assert footprint.emulation_args("linux/arm64", lambda: X86_CPUINFO, tmp_path, "aarch64") == []
