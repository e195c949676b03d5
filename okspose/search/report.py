"""What a search leaves behind: the CSV log, the reward plot, the best blocks drawn as graphs, the best
code as a training config."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

from okspose.config import Config
from okspose.fileio import atomic_write, save_figure
from okspose.models.blockqnn import output_nodes, parse_code
from okspose.search.state import Candidate, SearchState


def ranked(state: SearchState) -> list[Candidate]:
    """Trained candidates, best reward first (ties: earlier first)."""
    ok = [c for c in state.candidates.values() if c.status == "ok"]
    return sorted(ok, key=lambda c: (-c.reward, c.order))


def write_log(state: SearchState, path: Path) -> Path:
    """All finished candidates in the order they finished (rewritten whole, so it always matches the state)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(Candidate)])
    writer.writeheader()
    for c in sorted(state.candidates.values(), key=lambda c: c.order):
        writer.writerow(asdict(c))
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def plot_rewards(state: SearchState, schedule: list[float], path: Path) -> Path:
    """Reward of every trained candidate against its iteration, the iteration means, and epsilon."""
    ok = [c for c in state.candidates.values() if c.status == "ok"]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    if ok:
        it = np.array([c.iteration for c in ok]) + 1
        r = np.array([c.reward for c in ok])
        ax.scatter(it, r, s=10, alpha=0.5, label="candidate")
        means = [(i, r[it == i].mean()) for i in np.unique(it)]
        ax.plot(*zip(*means), color="C1", label="iteration mean")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    eps = ax.twinx()
    # each iteration's epsilon spans [i - 0.5, i + 0.5]
    eps.step(np.arange(len(schedule) + 1) + 0.5, [*schedule, schedule[-1]], where="post", color="C2", label="epsilon")
    eps.set_ylabel("epsilon")
    eps.set_ylim(0, 1.05)
    handles = ax.get_legend_handles_labels()[0] + eps.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right")
    ax.set_title(f"BlockQNN search: {len(ok)} trained blocks")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_block(ax: Axes, code: str) -> None:
    """Nodes in columns by their depth from the input, arrows from predecessors, the output on the right."""
    layers = parse_code(code)
    depth = [0]
    for layer in layers:
        depth.append(1 + max(depth[p] for p in layer.preds))
    out_depth = 1 + max(depth[i] for i in output_nodes(layers))
    labels = ["input"] + [f"{layer.index}: {layer.type}" for layer in layers] + ["concat+1x1"]
    depth.append(out_depth)
    rows: dict[int, int] = {}
    pos = []
    for d in depth:
        pos.append((d, rows.get(d, 0)))
        rows[d] = rows.get(d, 0) + 1
    pos = [(x, y - (rows[x] - 1) / 2) for x, y in pos]
    edges = [(p, layer.index) for layer in layers for p in layer.preds]
    edges += [(i, len(layers) + 1) for i in output_nodes(layers)]
    for a, b in edges:  # arrows shrunk by about half a label's width; long ones bent around the columns between
        bend = 0.3 if pos[b][0] - pos[a][0] > 1 else 0.0
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops={
            "arrowstyle": "->", "color": "0.4", "connectionstyle": f"arc3,rad={bend}",
            "shrinkA": 3.2 * len(labels[a]) + 6, "shrinkB": 3.2 * len(labels[b]) + 6})
    for (x, y), label in zip(pos, labels):
        ax.text(x, y, label, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "lightyellow" if label != "input" else "lightblue"})
    ax.set_xlim(-0.6, out_depth + 0.6)
    ax.set_ylim(-max(rows.values()) / 2 - 0.6, max(rows.values()) / 2 + 0.6)
    ax.axis("off")


def draw_blocks(candidates: list[Candidate], path: Path) -> Path:
    """The given blocks as graphs, one panel each, with reward and accuracy."""
    fig = Figure(figsize=(9, 2.6 * len(candidates)))
    axes = fig.subplots(len(candidates), 1, squeeze=False)
    for ax, c in zip(axes[:, 0], candidates):
        _draw_block(ax, c.code)
        ax.set_title(f"#{c.order + 1}: reward {c.reward:.4f}, accuracy {c.accuracy:.4f}, {c.gflops:.3f} GFLOPs\n"
                     f"{c.code}", fontsize=8)
    return _save(fig, path)


def write_best_config(cfg: Config, code: str, path: Path) -> Path:
    """``cfg`` with the best block as its model, for ``okspose train`` (the search section stays, unused)."""
    raw = cfg.to_dict()
    raw["model"].update(name="blockqnn", block_code=code)
    raw["train"]["output_dir"] = str(path.parent / "best_train")
    text = yaml.safe_dump(raw, sort_keys=False).encode()
    return atomic_write(path, lambda f: f.write(text))
