"""How far the BlockQNN reward's cost term mu x ln(cost) moves the reward across the 14 blocks of
docs/search.md's ranking, with the cost taken as the whole proxy network's GFLOPs (the old rule) and as the
block's own GFLOPs at the proxy's size (okspose.search.proxy.block_cost), at the config's mu. Counts only:
nothing trains. Prints a Markdown table and the spread (largest - smallest term) of each rule.

    python benchmarks/search_cost.py
"""

from __future__ import annotations

import math

import torch
from search_quality import BLOCKS, CONFIG, cpu_line

from okspose.config import load_config
from okspose.models.build import build_model
from okspose.models.complexity import count_flops
from okspose.search.proxy import block_cost, block_input_shape, candidate_config


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_config(CONFIG)
    mu, (w, h) = cfg.search.mu, cfg.data.input_size
    print(f"{cpu_line()}; mu = {mu}; block input {block_input_shape(cfg)}")
    rows = []
    for name, code in BLOCKS.items():
        c = candidate_config(cfg, code)
        net_gflops = count_flops(build_model(c), (1, 3, h, w)) / 1e9
        block_gflops, block_ms = block_cost(c, torch.device("cpu"))
        rows.append((name, code, net_gflops, block_gflops, block_ms))
    print("\n| block | network GFLOPs | mu ln(network GFLOPs) | block GFLOPs | mu ln(block GFLOPs) | block ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, code, net, block, ms in sorted(rows, key=lambda r: r[3]):
        print(f"| {name} (`{code}`) | {net:.4f} | {mu * math.log(net):+.4f} | {block:.5f} | "
              f"{mu * math.log(block):+.4f} | {ms:.3f} |")
    for label, k in (("network GFLOPs (old)", 2), ("block GFLOPs (new)", 3), ("block latency", 4)):
        terms = [mu * math.log(r[k]) for r in rows]
        print(f"spread of mu ln({label}) over the {len(rows)} blocks: {max(terms) - min(terms):.4f}")


if __name__ == "__main__":
    main()
