"""Search throughput: candidates per hour with the sequential executor and with Ray (2 workers), and the
driver's own overhead per candidate, on one small proxy (configs/search_synthetic.yaml at 32x32 with 40
synthetic images and 1 epoch, so a candidate trains in seconds on CPU).

    python benchmarks/bench_search.py [--iterations 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from okspose.commands.search import run_search
from okspose.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "search_synthetic.yaml"
PROXY = ["data.input_size=[32,32]", "data.heatmap_size=[8,8]", "model.num_features=16", "model.depth=2",
         "train.epochs=1", "search.synthetic_train=40", "search.synthetic_val=10", "search.max_layers=5"]


def measure(out: Path, executor: str, iterations: int, batch: int) -> dict:
    schedule = [iterations, *[0] * 9]
    cfg = load_config(CONFIG, [*PROXY, f"search.output_dir={out}", f"search.executor={executor}", "search.workers=2",
                               f"search.batch_size={batch}", f"search.iterations={schedule}"])
    start = time.perf_counter()
    result = run_search(cfg, log=lambda _: None)
    total = time.perf_counter() - start
    n = result.stats.finished
    train = sum(c.seconds for c in result.state.candidates.values())
    return {"executor": executor, "candidates": n, "total_s": total, "loop_s": result.stats.seconds,
            "per_hour": 3600 * n / result.stats.seconds, "train_s": train / n,
            "overhead_ms": 1000 * result.stats.overhead / n if executor == "ray"
            else 1000 * (result.stats.seconds - train) / n,
            "rewards": {c: r.reward for c, r in result.state.candidates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp) / name, name, args.iterations, args.batch) for name in ("sequential", "ray")]
    print("| executor | candidates | s / candidate (training) | loop s | candidates / hour | driver overhead ms "
          "/ candidate | with start-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['executor']} | {r['candidates']} | {r['train_s']:.2f} | {r['loop_s']:.1f} | {r['per_hour']:.0f} | "
              f"{r['overhead_ms']:.1f} | {r['total_s']:.1f} |")
    same = rows[0]["rewards"] == rows[1]["rewards"]
    print(f"same rewards on both executors: {same}; Ray speed-up {rows[1]['per_hour'] / rows[0]['per_hour']:.2f}x")


if __name__ == "__main__":
    main()
