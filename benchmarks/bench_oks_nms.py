"""OKS-NMS time per image: okspose's ``oks_nms`` (one OKS matrix, one greedy pass) vs mmpose's, in one run.

mmpose runs in its own virtualenv through ``../shared/peers/oks_nms_peer.py``; we rebuild its candidates
here from the same generator and seed (noisy copies of n/5 people, 17 joints, random scores, keypoint-box
areas), so both sides see identical inputs. Its printed "kept" count must equal ours. Rounds alternate
between the two sides so that load from other jobs on the machine hits both alike.

    .venv/bin/python benchmarks/bench_oks_nms.py [--n 20 100 500] [--repeat 20] [--rounds 3]

Without the peer environment only okspose is timed; make it once (about a minute) with
    bash ../shared/peers/setup_peer_env.sh .peer-venv
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from okspose.inference.nms import oks_nms

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO.parent / "shared" / "peers" / "oks_nms_peer.py"
PEER_PYTHON = REPO / ".peer-venv" / "bin" / "python"
PEER_LINE = re.compile(r"n=(\d+): median ([\d.]+) ms, kept (\d+)")


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peer_candidates(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The peer script's candidates, drawn in the same order from the same generator.

    n/5 people scattered over 800 x 800 px, each candidate a copy of person i mod n/5 with Gaussian joint
    noise of a random 1-15 px, joint scores U(0.1, 1), instance score U(0, 1), area = keypoint box + 1 px.
    """
    m = max(1, n // 5)
    people = rng.uniform(100, 900, size=(m, 1, 2)) + rng.normal(0, 60, size=(m, 17, 2))
    kpts, scores, areas = np.empty((n, 17, 3)), np.empty(n), np.empty(n)
    for i in range(n):  # per candidate only to replay the peer's random stream; not timed
        kpts[i, :, :2] = people[i % m] + rng.normal(0, rng.uniform(1, 15), size=(17, 2))
        kpts[i, :, 2:] = rng.uniform(0.1, 1.0, size=(17, 1))
        w, h = np.ptp(kpts[i, :, :2], axis=0) + 1
        scores[i] = rng.uniform()
        areas[i] = w * h
    return kpts, scores, areas


def time_ours(inputs: dict[int, tuple], repeat: int, thr: float) -> dict[int, tuple[list[float], int]]:
    out = {}
    for n, (kpts, scores, areas) in inputs.items():
        keep = oks_nms(kpts, scores, areas, thr)  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            oks_nms(kpts, scores, areas, thr)
            times.append(time.perf_counter() - t)
        out[n] = (times, len(keep))
    return out


def run_peer(python: Path, ns: list[int], repeat: int, thr: float, seed: int) -> dict[int, tuple[float, int]]:
    """{n: (median ms, kept)} parsed from the peer script's output."""
    cmd = [str(python), str(PEER_SCRIPT), "--n", *map(str, ns), "--repeat", str(repeat), "--thr", str(thr),
           "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"peer failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    found = {int(n): (float(ms), int(kept)) for n, ms, kept in PEER_LINE.findall(proc.stdout)}
    if sorted(found) != sorted(ns):
        raise RuntimeError(f"could not parse the peer's output:\n{proc.stdout}")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20, 100, 500], help="candidates per image")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per size and round (the peer's default)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating okspose / mmpose rounds")
    ap.add_argument("--thr", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)  # one stream over all sizes, in order, as the peer draws them
    inputs = {n: peer_candidates(n, rng) for n in a.n}
    have_peer = a.peer_python.is_file() and PEER_SCRIPT.is_file()
    if not have_peer:
        print(f"peer environment not found ({a.peer_python}); timing okspose alone. Make it once with\n"
              f"    cd {REPO} && bash ../shared/peers/setup_peer_env.sh .peer-venv\n", file=sys.stderr)

    ours: dict[int, list[float]] = {n: [] for n in a.n}
    peer: dict[int, list[float]] = {n: [] for n in a.n}
    kept_ours, kept_peer = {}, {}
    for _ in range(a.rounds):
        for n, (times, kept) in time_ours(inputs, a.repeat, a.thr).items():
            ours[n].append(float(np.median(times)) * 1e3)
            kept_ours[n] = kept
        if have_peer:
            for n, (ms, kept) in run_peer(a.peer_python, a.n, a.repeat, a.thr, a.seed).items():
                peer[n].append(ms)
                kept_peer[n] = kept

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, load {load:.1f}; "
          f"median of {a.repeat} calls per round, median of {a.rounds} rounds; thr {a.thr}, seed {a.seed}\n")
    if have_peer:
        print("| candidates | okspose ms | mmpose ms | speed-up | kept (okspose / mmpose) |")
        print("|---:|---:|---:|---:|---:|")
    else:
        print("| candidates | okspose ms | kept |")
        print("|---:|---:|---:|")
    for n in a.n:
        mine = float(np.median(ours[n]))
        if have_peer:
            theirs = float(np.median(peer[n]))
            print(f"| {n} | {mine:.3f} | {theirs:.3f} | {theirs / mine:.1f}x | {kept_ours[n]} / {kept_peer[n]} |")
        else:
            print(f"| {n} | {mine:.3f} | {kept_ours[n]} |")
    if have_peer and kept_ours != kept_peer:
        sys.exit("kept counts differ: the two sides did not see the same candidates")


if __name__ == "__main__":
    main()
