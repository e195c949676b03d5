"""Team OKS's ablation tables on the demo's synthetic val set, once per OKS-NMS area (``test.oks_area``).

``box`` scales OKS by the person box's w * h (okspose's default); ``crop`` by the padded,
aspect-fixed crop the person was posed from (HRNet's and mmpose's). Needs a finished demo (``make demo``
writes ``work/demo/{data, train/, detector.pth}``); then, from the repository root:

    .venv/bin/python benchmarks/ablation_oks_area.py [--demo work/demo] [--detections FILE]

Each setting is one ``okspose ablation`` run with the demo's config and detector; the tables are written
to ``DEMO/ablation_oks_area_{box,crop}.md`` and printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=Path("work/demo"), help="the demo's working folder")
    ap.add_argument("--detections", type=Path, help="person boxes from this file instead of the demo's detector")
    a = ap.parse_args()
    config, checkpoint, detector = a.demo / "train" / "config.yaml", a.demo / "train" / "checkpoint.pth", \
        a.demo / "detector.pth"
    needed = [config, checkpoint, a.demo / "data"] + ([a.detections] if a.detections else [detector])
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        sys.exit(f"no finished demo in {a.demo} (missing {', '.join(missing)}); run `make demo` first")
    boxes = ["--detections", str(a.detections)] if a.detections else \
        ["--detector", "synthetic", "--detector-weights", str(detector)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for area in ("box", "crop"):
        out = a.demo / f"ablation_oks_area_{area}.md"
        print(f"\n## test.oks_area={area}\n", flush=True)
        subprocess.run([sys.executable, "-m", "okspose.cli", "ablation", str(config), f"data.root={a.demo / 'data'}",
                        f"test.oks_area={area}", "--checkpoint", str(checkpoint), *boxes, "--out", str(out),
                        "--device", "cpu"], check=True, env=env)


if __name__ == "__main__":
    main()
