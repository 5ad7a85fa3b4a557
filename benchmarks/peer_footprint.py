"""Resident memory of one `tangle peer` process per model backend, after a few training rounds.

Each case starts a real `tangle peer` (STORAGE=memory MESSAGE_BROKER=memory: a standalone peer, no IPFS node,
so only the peer's own memory is measured), lets it train `--rounds` rounds (TRAINING_INTERVAL=15,
ACTIVE_QUOTA=1, PUBLISH_RULE=always), polls /api/peer until the round `--rounds` has finished, then reads
from /proc: VmRSS after that round (rss_mb, what the issue compares: the peer between rounds), the peak over
rounds 2..N (rounds_peak_rss_mb: VmHWM reset through clear_refs after round 1; what every peer in a round at
once needs, and what the peers-per-Pi count uses), the peak of the start-up and first round
(startup_peak_rss_mb: imports, libraries loading) and the larger peak (peak_rss_mb); where the memory is
(rss_by_mapping, from /proc/PID/smaps: the runtime's libraries, the mapped model file, numpy's libraries,
other files, anonymous memory); then stops the peer with SIGTERM. PSS and USS are listed beside it because the
libraries' pages are shared: with several peers on one machine each library is resident once, so a peer's
PSS there is closer to what one more peer costs than its RSS. A standalone peer's memory storage holds every
weight set it published (26 MB each for the LEAF CNN): PUBLISH_RULE=always makes that the same on both
backends.

Cases: the MLP and the small CNN on the UCI digits, and the LEAF FEMNIST CNN on FEMNIST-shaped data (a
synthetic converted .npz: 3,000 random 28x28 images, 62 classes; no package ships FEMNIST, and memory does
not depend on the pixel values), each with numpy and with tflite.

    python benchmarks/peer_footprint.py [--rounds 3] [--only mlp cnn femnist-cnn] [--together 3]

--together N runs N peers of a case at once (PEER_INDEX 0..N-1) and lists the PSS of each: the cost of a
peer on a machine that runs several, with the shared libraries split among them.

On demand, inside a container image (e.g. an arm64 or armv7 peer image, which carry the TFLite runtime, run
under qemu-user): --image learning-tangle/peer:0.1.0 --platform linux/arm64. The peer runs as the image's
entrypoint; its memory is read from inside the container (/proc/1/status). Under qemu-user that is the
emulator's memory, the peer's plus qemu's own (translation buffers): an upper bound of the native figure.
With --image the result also holds `idle_python`: the same reading for an idle `python3` in the same image and
platform (the interpreter started, nothing imported), the baseline that shows what the emulator adds.

An arm64 image under qemu-user on another machine runs on an emulated Raspberry Pi 4 CPU
(QEMU_CPU=cortex-a72). qemu-user before 8.2 (Debian 12 ships 7.2) shows the guest the host's /proc/cpuinfo,
an x86 one, and the TensorFlow Lite runtime's CPU detection (cpuinfo, at interpreter creation) dereferences a
null pointer on it: a peer on ai-edge-litert dies with SIGSEGV (tflite-runtime 2.14, which the aarch64 image
now gets, starts either way). So where the emulated /proc/cpuinfo is not an ARM one, a stand-in is mounted
over it: a Pi 4's, with this machine's CPU count (`emulation_args`). A real arm64 machine has its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

CASES = {"mlp": "digits", "cnn": "digits", "femnist-cnn": "femnist"}
PI_RAM_MB = 4096
PI_RESERVED_MB = 512  # the OS, k3s agent and page cache a 4 GB Pi keeps for itself (an assumption, stated)
ROOT = Path(__file__).resolve().parents[1]
# Seconds between rounds: longer than a round of the LEAF CNN here (on a loaded machine), so that "rss_mb" is
# read between rounds (right after one finished), not in the middle of the next one; VmHWM covers the rounds.
TRAINING_INTERVAL = 15


def synthetic_femnist(folder: Path, samples: int = 3000) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "femnist-synthetic.npz"
    np.savez_compressed(
        path,
        x=rng.integers(0, 256, (samples, 28, 28), dtype=np.uint8),
        y=rng.integers(0, 62, samples).astype(np.uint8),
        writers=(np.arange(samples) % 100).astype(np.int32),
        writer_names=np.array([f"f{i:04d}_00" for i in range(100)]),
        format_version=np.int32(1),
    )
    return path


def environment(arch: str, backend: str, dataset_path: str | None) -> dict[str, str]:
    env = {
        "STORAGE": "memory",
        "MESSAGE_BROKER": "memory",
        "PEER_INDEX": "0",
        "PEERS": "10",
        "PARTITION": "iid",
        "TRAINING_INTERVAL": str(TRAINING_INTERVAL),
        "ACTIVE_QUOTA": "1",
        # every round publishes: the memory storage then holds as many weight sets on either backend
        "PUBLISH_RULE": "always",
        "OPENBLAS_NUM_THREADS": "1",
        "MODEL": "tflite" if backend == "tflite" else arch,
    }
    if backend == "tflite":
        env["TFLITE_ARCH"] = arch
    if dataset_path is not None:
        env["DATASET"] = "femnist"
        env["DATASET_PATH"] = dataset_path
    return env


def wait_trained(port_of: Any, rounds: int, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        port = port_of()
        if port:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/peer", timeout=5).json()
                # lastRound is set when a round has finished (ACTIVE_QUOTA=1: every tick is a round)
                if int((info.get("lastRound") or {}).get("tick", 0)) >= rounds:
                    return dict(info)
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"the peer did not train {rounds} rounds in time")


RESET_PEAK = 5  # written to /proc/PID/clear_refs: VmHWM starts again from VmRSS (proc(5))


def reset_peak(clear_refs: Path) -> None:
    clear_refs.write_text(f"{RESET_PEAK}\n")


def memory_figures(status: str, startup_peak_mb: float) -> dict[str, float]:
    """RSS after the last round; the peak over rounds 2..N (VmHWM reset after round 1); the peak of the
    start-up and first round; peak_rss_mb, the larger peak."""
    rounds_peak = status_mb(status, "VmHWM")
    return {
        "rss_mb": status_mb(status, "VmRSS"),
        "rounds_peak_rss_mb": rounds_peak,
        "startup_peak_rss_mb": startup_peak_mb,
        "peak_rss_mb": max(rounds_peak, startup_peak_mb),
    }


def status_mb(text: str, key: str) -> float:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    assert match, key
    return round(int(match.group(1)) / 1024, 1)


# Where the resident memory is, by mapping (from /proc/PID/smaps): the TensorFlow Lite runtime's libraries,
# the mapped .tflite file, numpy and its OpenBLAS, the other shared libraries (Python, pydantic, OpenSSL, ...)
# and anonymous memory (the Python and C heaps: weights, tensors, the tangle, interpreter arenas).
RUNTIME_LIBS = ("/ai_edge_litert/", "/tflite_runtime/")


def mapping_group(name: str) -> str:
    if any(part in name for part in RUNTIME_LIBS):
        return "tflite_runtime_libs"
    if name.endswith(".tflite"):
        return "tflite_model_file"
    if "/numpy/" in name or "/numpy.libs/" in name:
        return "numpy_libs"
    if name.startswith("/"):
        return "other_files"
    return "anonymous"  # [heap], [stack], unnamed mappings


def smaps_breakdown(text: str) -> dict[str, float]:
    """Resident MB by mapping group, and the process's PSS and USS (private) in MB."""
    kilobytes: dict[str, int] = {}
    group = "anonymous"
    pss = private = 0
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
        if header:
            group = mapping_group(header.group(1))
            continue
        key, _, value = line.partition(":")
        if key == "Rss":
            kilobytes[group] = kilobytes.get(group, 0) + int(value.split()[0])
        elif key == "Pss":
            pss += int(value.split()[0])
        elif key in ("Private_Clean", "Private_Dirty"):
            private += int(value.split()[0])
    breakdown = {f"{name}_mb": round(kb / 1024, 1) for name, kb in sorted(kilobytes.items())}
    return {**breakdown, "pss_mb": round(pss / 1024, 1), "uss_mb": round(private / 1024, 1)}


def start_peer(env: dict[str, str]) -> tuple[subprocess.Popen[str], Callable[[], int | None]]:
    """A `tangle peer` process and a function that returns its HTTP port once it has logged it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "peer", "peer"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    port: list[int] = []

    def port_of() -> int | None:
        # the daemon logs "HTTP API on http://127.0.0.1:PORT" once it has bound a free port
        while not port:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("the peer exited:\n" + "".join(lines[-20:]))
            lines.append(line)
            found = re.search(r"HTTP API on http://[^:]+:(\d+)", line)
            if found:
                port.append(int(found.group(1)))
        return port[0]

    return process, port_of


def measure_native(
    arch: str, backend: str, dataset_path: str | None, rounds: int, together: int = 1
) -> dict[str, Any]:
    """One peer, or `together` peers at once (PEER_INDEX 0, 1, ...): the first one's figures, and with more
    than one the PSS of each, which splits the pages they share (the libraries) among them."""
    peers = [
        start_peer(
            {**os.environ, **environment(arch, backend, dataset_path), "HTTP_PORT": "0", "PEER_INDEX": str(i)}
        )
        for i in range(together)
    ]
    try:
        # the start-up (imports, the first interpreter) peaks once; the rounds are what a running peer needs
        startup = 0.0
        for index, (process, port_of) in enumerate(peers):
            wait_trained(port_of, 1, time.monotonic() + 900)
            if index == 0:
                startup = status_mb(Path(f"/proc/{process.pid}/status").read_text(), "VmHWM")
            reset_peak(Path(f"/proc/{process.pid}/clear_refs"))
        infos = [wait_trained(port_of, rounds, time.monotonic() + 900) for _, port_of in peers]
        smaps = [Path(f"/proc/{process.pid}/smaps").read_text() for process, _ in peers]
        status = Path(f"/proc/{peers[0][0].pid}/status").read_text()
        run = {
            "architecture": infos[0]["model"],
            "trainings": infos[0]["trainings"],
            "published": infos[0]["published"],
            **memory_figures(status, startup),
            "rss_by_mapping": smaps_breakdown(smaps[0]),
        }
        if together > 1:
            run["together"] = together
            run["pss_mb_each"] = [smaps_breakdown(text)["pss_mb"] for text in smaps]
        return run
    finally:
        for process, _ in peers:
            process.send_signal(signal.SIGTERM)
        for process, _ in peers:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()


# The CPU an emulated arm64 peer runs on: a Raspberry Pi 4's (Cortex-A72 r0p3, MIDR 0x410fd083). QEMU_CPU
# selects it in qemu-user (its default, `max`, has SVE and SME, which no Pi has); the stand-in /proc/cpuinfo
# below names the same part.
ARM64_QEMU_CPU = "cortex-a72"
ARM64_PLATFORMS = ("linux/arm64", "linux/arm64/v8")


def arm64_cpuinfo(cpus: int) -> str:
    """/proc/cpuinfo as an arm64 Linux kernel writes it on a Raspberry Pi 4, with `cpus` processors."""
    processor = (
        "processor\t: {index}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n"
    )
    board = "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"
    return "".join(processor.format(index=i) for i in range(cpus)) + board


def possible_cpus(text: str) -> int:
    """The CPU count of /sys/devices/system/cpu/possible (e.g. "0-1" or "0-3,6"): its highest index + 1."""
    return 1 + max(int(part.rsplit("-", 1)[-1]) for part in text.strip().split(","))


def emulation_args(
    platform: str, emulated_cpuinfo: Callable[[], str], folder: Path, machine: str | None = None
) -> list[str]:
    """`podman run` options for an image of `platform` on this machine (`machine`: os.uname's). For arm64
    on another architecture (qemu-user): the Pi 4 CPU, and a stand-in /proc/cpuinfo (written into `folder`)
    where the one the emulated image sees (`emulated_cpuinfo()`) is not an ARM one, as qemu-user before 8.2
    shows the host's."""
    if platform not in ARM64_PLATFORMS or (machine or os.uname().machine) == "aarch64":
        return []
    args = ["-e", f"QEMU_CPU={ARM64_QEMU_CPU}"]
    if "CPU implementer" in emulated_cpuinfo():
        return args
    standin = folder / "cpuinfo-arm64"
    cpus = possible_cpus(Path("/sys/devices/system/cpu/possible").read_text())
    standin.write_text(arm64_cpuinfo(cpus))
    return [*args, "-v", f"{standin}:/proc/cpuinfo:ro"]


def image_cpuinfo(image: str, platform: str) -> str:
    """/proc/cpuinfo as a process of `image` sees it on `platform` (under qemu-user: what qemu shows)."""
    run = ["podman", "run", "--rm", "--platform", platform, "--entrypoint", "cat", image, "/proc/cpuinfo"]
    return subprocess.run(run, check=True, capture_output=True, text=True).stdout


def measure_image(
    arch: str,
    backend: str,
    dataset_path: str | None,
    rounds: int,
    image: str,
    platform: str,
    emulation: list[str],
) -> dict[str, Any]:
    name = f"lt-tflite-footprint-{uuid.uuid4().hex[:8]}"
    env = environment(arch, backend, "/data/femnist.npz" if dataset_path else None)
    args = ["podman", "run", "-d", "--rm", "--name", name, "--platform", platform, "-p", "127.0.0.1::8000"]
    args += emulation
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    if dataset_path:
        args += ["-v", f"{dataset_path}:/data/femnist.npz:ro"]
    subprocess.run([*args, image], check=True, capture_output=True, text=True)
    try:
        mapped = subprocess.run(["podman", "port", name, "8000"], check=True, capture_output=True, text=True)
        port = int(mapped.stdout.strip().rsplit(":", 1)[1])

        def in_container(*command: str) -> str:
            return subprocess.run(
                ["podman", "exec", name, *command], check=True, capture_output=True, text=True
            ).stdout

        wait_trained(lambda: port, 1, time.monotonic() + 3600)
        startup = status_mb(in_container("cat", "/proc/1/status"), "VmHWM")
        in_container("sh", "-c", f"echo {RESET_PEAK} > /proc/1/clear_refs")
        info = wait_trained(lambda: port, rounds, time.monotonic() + 3600)
        return {
            "architecture": info["model"],
            "trainings": info["trainings"],
            "published": info["published"],
            **memory_figures(in_container("cat", "/proc/1/status"), startup),
            "image": image,
            "platform": platform,
        }
    finally:
        subprocess.run(["podman", "stop", "-t", "120", name], capture_output=True, check=False)


def measure_idle_python(
    image: str, platform: str, emulation: list[str], settle: float = 5.0
) -> dict[str, Any]:
    """VmRSS of an idle python3 as the container's PID 1 in the image (under qemu-user for a foreign platform:
    interpreter plus emulator), read the same way as the peer's once it has settled."""
    name = f"lt-tflite-footprint-idle-{uuid.uuid4().hex[:8]}"
    sleeper = "import time; time.sleep(3600)"
    run = ["podman", "run", "-d", "--rm", "--name", name, "--platform", platform, *emulation]
    run += ["--entrypoint", "python3"]
    subprocess.run([*run, image, "-c", sleeper], check=True, capture_output=True, text=True)
    try:
        time.sleep(settle)  # what is measured is the settled footprint, not an event to wait for
        status = subprocess.run(
            ["podman", "exec", name, "cat", "/proc/1/status"], check=True, capture_output=True, text=True
        ).stdout
        return {"rss_mb": status_mb(status, "VmRSS"), "peak_rss_mb": status_mb(status, "VmHWM")}
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, check=False)


def measure_kubo(settle: float = 20.0) -> dict[str, Any]:
    """One kubo node (scripts/build-kubo.sh) with the test profile (loopback, no bootstrap peers), idle for
    `settle` seconds after it is ready: an isolated node, so a lower bound for one in a real swarm."""
    binary = subprocess.run([str(ROOT / "scripts/build-kubo.sh")], check=True, capture_output=True, text=True)
    ipfs = binary.stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as repo:
        env = {**os.environ, "IPFS_PATH": repo}
        subprocess.run([ipfs, "init", "--profile", "test"], env=env, check=True, capture_output=True)
        for key, value in (("Swarm.ConnMgr.LowWater", "40"), ("Swarm.ConnMgr.HighWater", "70")):
            subprocess.run([ipfs, "config", "--json", key, value], env=env, check=True, capture_output=True)
        daemon = subprocess.Popen(
            [ipfs, "daemon", "--enable-pubsub-experiment"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert daemon.stdout is not None
        try:
            for line in daemon.stdout:
                if "Daemon is ready" in line:
                    break
            else:
                raise RuntimeError("kubo exited before it was ready")
            time.sleep(settle)  # what is measured is the settled footprint, not an event to wait for
            status = Path(f"/proc/{daemon.pid}/status").read_text()
            return {"rss_mb": status_mb(status, "VmRSS"), "peak_rss_mb": status_mb(status, "VmHWM")}
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)


def peers_on_a_pi(peer_mb: float, kubo_mb: float) -> int:
    return int((PI_RAM_MB - PI_RESERVED_MB) // (peer_mb + kubo_mb))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="training rounds before measuring")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--backends", nargs="*", choices=["numpy", "tflite"], default=["numpy", "tflite"])
    parser.add_argument(
        "--together", type=int, default=1, help="run this many peers at once (natively); lists each one's PSS"
    )
    parser.add_argument("--image", help="measure inside this image (podman) instead of natively")
    parser.add_argument("--platform", default="linux/amd64", help="the image's platform (with --image)")
    parser.add_argument(
        "--kubo-rss", type=float, help="MB a kubo node needs, for the peers-per-Pi count (default: measured)"
    )
    args = parser.parse_args()
    kubo = {"peak_rss_mb": args.kubo_rss} if args.kubo_rss is not None else measure_kubo()
    print(json.dumps({"kubo": kubo}), file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        emulation: list[str] = []
        idle = None
        if args.image:
            image, platform = args.image, args.platform
            emulation = emulation_args(platform, lambda: image_cpuinfo(image, platform), Path(folder))
            idle = measure_idle_python(args.image, args.platform, emulation)
            print(json.dumps({"idle_python": idle, "emulation": emulation}), file=sys.stderr, flush=True)
        femnist = str(synthetic_femnist(Path(folder)))
        for arch in args.only:
            dataset_path = femnist if CASES[arch] == "femnist" else None
            results[arch] = {}
            for backend in args.backends:
                if args.image:
                    run = measure_image(
                        arch, backend, dataset_path, args.rounds, args.image, args.platform, emulation
                    )
                else:
                    run = measure_native(arch, backend, dataset_path, args.rounds, args.together)
                # every peer in a round at once (the worst case); the start-up peak passes once per peer
                run["peers_per_4gb_pi"] = peers_on_a_pi(run["rounds_peak_rss_mb"], kubo["peak_rss_mb"])
                results[arch][backend] = run
                print(json.dumps({arch: {backend: run}}), file=sys.stderr, flush=True)
            if {"numpy", "tflite"} <= results[arch].keys():
                numpy_run, tflite_run = (results[arch][b] for b in ("numpy", "tflite"))
                results[arch]["tflite_over_numpy"] = {
                    figure: round(tflite_run[figure] / numpy_run[figure], 2)
                    for figure in ("rss_mb", "rounds_peak_rss_mb", "startup_peak_rss_mb", "peak_rss_mb")
                }
    print(
        json.dumps(
            {
                "benchmark": "peer_footprint",
                "where": f"{args.image} ({args.platform})" if args.image else "native",
                "rounds": args.rounds,
                "training_interval": TRAINING_INTERVAL,
                "load_average_1m": round(os.getloadavg()[0], 1),
                "kubo": kubo,
                **({"idle_python": idle, "emulation": emulation} if idle else {}),
                "pi": {"ram_mb": PI_RAM_MB, "reserved_mb": PI_RESERVED_MB},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
