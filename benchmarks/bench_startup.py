"""Start-up of the command line: wall time of ``okspose --help``, ``okspose test --help`` and
``okspose eval-results --help`` against ``python -c "import torch, torchvision"``, measured in one run,
interleaved, median of ``--repeat`` fresh processes each. The target: ``okspose --help`` within 0.3x of the
torch import (the command line parses before it loads any heavy library).

    python benchmarks/bench_startup.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

TARGET = 0.3
COMMANDS = {
    "python (interpreter only)": ["-c", "pass"],
    'python -c "import torch, torchvision"': ["-c", "import torch, torchvision"],
    "okspose --help": ["-m", "okspose.cli", "--help"],
    "okspose test --help": ["-m", "okspose.cli", "test", "--help"],
    "okspose eval-results --help": ["-m", "okspose.cli", "eval-results", "--help"],
}
REFERENCE = 'python -c "import torch, torchvision"'


def cpu_flags() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo (Linux); empty elsewhere."""
    model, flags = "unknown CPU", set()
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    return model, flags


def bf16_support(flags: set[str]) -> str:
    """The CPU's native bf16 from its flags: what ``amp=auto`` trains in there."""
    return "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "none (emulated)"


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="fresh processes per command (median taken)")
    args = parser.parse_args()
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)}; {date.today()}; python {sys.version.split()[0]}")
    for args_ in COMMANDS.values():  # warm the file cache once, untimed
        wall_time(args_)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    ref = statistics.median(times[REFERENCE])
    print(f"\n| command | median s ({args.repeat} runs) | vs `import torch, torchvision` |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| `{name}` | {statistics.median(t):.3f} | {statistics.median(t) / ref:.2f}x |")
    ratio = statistics.median(times["okspose --help"]) / ref
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"\nokspose --help / torch import: {ratio:.2f}x (target <= {TARGET}x): {verdict}")


if __name__ == "__main__":
    main()
