"""Does the BlockQNN search answer its question? Two measurements on one proxy:

* ``rank``: does the short proxy training rank blocks as a training 5x longer does? Kendall's tau between
  the proxy's reward and the longer training's accuracy (PCK on the same val persons), over blocks that
  span the space (the hourglass residual written as a code, pooling-only blocks, wide concat blocks, the
  first searched block, ...), 2 seeds each, plus the proxy's own seed-to-seed tau (its noise ceiling).
* ``duel``: the searched block against BlockQNN's baseline, the 3-residual 2-stack hourglass, at equal
  parameters (the block's width chosen for it) and the ``rank`` long setting, several seeds each.
* ``versus``: Q-learning against random search (``search.policy=random``) with the same number of trained
  candidates, several seeds each: best-so-far reward against candidates trained and the mean of the top-5
  rewards at the end, plotted to ``search_vs_random.png``.

The proxy data: ``real`` = every COCO person with an image in ../shared/data (coco-mini + coco128: ~225
train and ~300 val persons, merged into one COCO file per split with absolute image paths), or
``synthetic`` = the generated people of configs/search_synthetic.yaml (the merge is bench_real.py's). Prints
the CPU and the wall time.

    python benchmarks/search_quality.py rank --proxy real --out work/search_rank
    python benchmarks/search_quality.py versus --proxy real --seeds 3 --candidates 40 --out work/search_vs
    python benchmarks/search_quality.py duel --proxy synthetic --code "$(cat runs/search/best_code.txt)" --out work/duel
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from bench_real import merged
from bench_startup import bf16_support, cpu_flags
from matplotlib.figure import Figure

from okspose.commands.search import prepare_data, run_search
from okspose.config import Config, load_config
from okspose.fileio import read_json, save_figure, save_json
from okspose.intervals import paired_interval
from okspose.models.build import build_model
from okspose.models.complexity import count_parameters, measure_complexity
from okspose.search.proxy import evaluate_candidate, proxy_accuracy, proxy_records, reward, train_proxy

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "okspose" / "configs" / "search_synthetic.yaml"

BLOCKS = {  # name -> code; kinds that span the space
    "hourglass residual (bottleneck + skip)": "1 conv1 0; 2 conv3 1; 3 conv1 2; 4 add 0 3",
    "3x3 conv + skip": "1 conv3 0; 2 add 0 1",
    "one 3x3 conv": "1 conv3 0",
    "one 1x1 conv": "1 conv1 0",
    "two 5x5 convs": "1 conv5 0; 2 conv5 1",
    "three 3x3 convs": "1 conv3 0; 2 conv3 1; 3 conv3 2",
    "identity only": "1 identity 0",
    "max pooling only": "1 max3 0",
    "pooling chain": "1 avg3 0; 2 max3 1",
    "pooling concat": "1 max3 0; 2 avg3 0; 3 concat 1 2",
    "wide concat of convs": "1 conv3 0; 2 conv5 0; 3 concat 1 2; 4 concat 0 3",
    "first searched block (22-min search)": "1 max3 0; 2 conv5 0; 3 conv3 1; 4 concat 0 2; 5 concat 2 4",
    "pool then conv + skip": "1 conv1 0; 2 max3 1; 3 conv3 2; 4 add 0 3",
    "two branches added": "1 conv3 0; 2 conv1 0; 3 add 1 2",
}


def cpu_line() -> str:
    model, flags = cpu_flags()
    return f"CPU: {model}, native bf16: {bf16_support(flags)}"


def proxy_config(proxy: str, out: Path, extra: list[str] | None = None) -> Config:
    """The default proxy's settings on ``proxy`` data (the real merge, or the synthetic people)."""
    if proxy == "synthetic":
        cfg = load_config(CONFIG, [f"search.output_dir={out}", *(extra or [])])
        return prepare_data(cfg, out)
    root = out / "real"
    merged(root, "train"), merged(root, "val")
    return load_config(CONFIG, [f"search.output_dir={out}", "search.proxy_data=coco", f"data.root={root}",
                                "data.train_ann=person_keypoints_train_merged.json", "data.train_images=/",
                                "data.val_ann=person_keypoints_val_merged.json", "data.val_images=/",
                                *(extra or [])])


def longer(cfg: Config, factor: int) -> Config:
    """The same proxy trained ``factor`` times as many epochs (lr steps scaled alike)."""
    t = cfg.train
    return dataclasses.replace(cfg, train=dataclasses.replace(
        t, epochs=t.epochs * factor, lr_steps=tuple(s * factor for s in t.lr_steps)))


def with_seed(cfg: Config, seed: int) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant)."""
    a, b = np.asarray(a), np.asarray(b)
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n0 = len(i)
    ta, tb = np.sum(da == 0), np.sum(db == 0)
    return float(np.sum(da * db) / math.sqrt((n0 - ta) * (n0 - tb)))


def rank(args: argparse.Namespace) -> None:
    cfg = proxy_config(args.proxy, args.out, [f"search.threads={args.threads}"])
    s = cfg.search
    results_path = args.out / "rank.json"
    results = read_json(results_path, "results") if results_path.is_file() else {}
    start = time.perf_counter()
    for name, code in BLOCKS.items():
        for seed in range(args.seeds):
            for setting, run_cfg in (("proxy", cfg), ("long", longer(cfg, args.factor))):
                key = f"{setting}|{seed}|{code}"
                if key not in results:
                    r = evaluate_candidate(code, with_seed(run_cfg, seed))
                    results[key] = {**r, "reward": reward(r, s.mu, s.rho, s.cost)}
                    save_json(results, results_path)
                    print(f"{setting:5s} seed {seed} {name}: acc {r['accuracy']:.4f} reward "
                          f"{results[key]['reward']:.4f} ({r['seconds']:.0f} s)", flush=True)
    names = list(BLOCKS)

    def get(setting: str, seed: int, what: str) -> list[float]:
        return [results[f"{setting}|{seed}|{BLOCKS[n]}"][what] for n in names]

    proxy_mean = np.mean([get("proxy", k, "reward") for k in range(args.seeds)], axis=0)
    long_mean = np.mean([get("long", k, "accuracy") for k in range(args.seeds)], axis=0)
    print(f"\n{cpu_line()}; {len(names)} blocks x {args.seeds} seeds, proxy {cfg.train.epochs} epochs, long "
          f"{cfg.train.epochs * args.factor} epochs on {args.proxy} data; {time.perf_counter() - start:.0f} s")
    print("\n| block | code | proxy reward (mean) | long accuracy (mean) |\n|---|---|---:|---:|")
    for n, p, q in sorted(zip(names, proxy_mean, long_mean), key=lambda x: -x[2]):
        print(f"| {n} | `{BLOCKS[n]}` | {p:.4f} | {q:.4f} |")
    taus = {"proxy reward vs long accuracy (seed means)": kendall_tau(proxy_mean, long_mean)}
    for k in range(args.seeds):
        taus[f"seed {k}: proxy reward vs long accuracy"] = kendall_tau(get("proxy", k, "reward"),
                                                                       get("long", k, "accuracy"))
    if args.seeds > 1:
        taus["proxy seed 0 vs seed 1 (noise ceiling)"] = kendall_tau(get("proxy", 0, "reward"),
                                                                      get("proxy", 1, "reward"))
        taus["long seed 0 vs seed 1"] = kendall_tau(get("long", 0, "accuracy"), get("long", 1, "accuracy"))
    print()
    for k, v in taus.items():
        print(f"Kendall tau, {k}: {v:+.3f}")
    save_json({"results": results, "taus": taus, "blocks": BLOCKS}, results_path)


def versus(args: argparse.Namespace) -> None:
    base = proxy_config(args.proxy, args.out / "data", [f"search.threads={args.threads}"])
    batch = 4
    iterations = [0] * 10
    n_iter = math.ceil(args.candidates / batch)
    # the paper's epsilon steps compressed: half the iterations exploring at 1.0, then one step each down to 0.1
    explore = max(1, n_iter - 9)
    iterations[0], rest = explore, n_iter - explore
    for k in range(1, 10):
        iterations[k] = 1 if k <= rest else 0
    curves: dict[str, list[list[float]]] = {"q": [], "random": []}
    start = time.perf_counter()
    # seed by seed, both policies each, so a run stopped early leaves whole pairs (resumed with --seeds)
    for seed in range(args.seeds):
        for policy in ("q", "random"):
            out = args.out / f"{policy}_{seed}"
            cfg = dataclasses.replace(base, search=dataclasses.replace(
                base.search, output_dir=str(out), policy=policy, seed=seed, batch_size=batch,
                iterations=tuple(iterations)))
            if (out / "state.json").is_file():
                result = run_search(cfg, resume=out, log=lambda _: None)
            else:
                result = run_search(cfg, log=lambda _: None)
            ok = sorted((c for c in result.state.candidates.values() if c.status == "ok"), key=lambda c: c.order)
            rewards = [c.reward for c in ok]
            curves[policy].append(list(np.maximum.accumulate(rewards)))
            top5 = float(np.mean(sorted(rewards)[-5:]))
            print(f"{policy:6s} seed {seed}: {len(rewards)} trained, best {max(rewards):.4f}, top-5 mean "
                  f"{top5:.4f}, best block {max(ok, key=lambda c: c.reward).code}", flush=True)
            save_json({"policy": policy, "seed": seed, "rewards": rewards, "top5": top5,
                       "codes": [c.code for c in ok]}, args.out / f"{policy}_{seed}.json")
    print(f"\n{cpu_line()}; {args.seeds} seeds x 2 policies x ~{args.candidates} candidates on {args.proxy} data; "
          f"{time.perf_counter() - start:.0f} s")
    n = min(len(r) for runs in curves.values() for r in runs)  # the same number of trained candidates
    summary = {"candidates": n}
    for policy, runs in curves.items():
        best = [r[n - 1] for r in runs]
        top5 = [float(np.mean(sorted(json.loads((args.out / f"{policy}_{k}.json").read_text())["rewards"][:n])[-5:]))
                for k in range(args.seeds)]
        sd = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)  # noqa: E731
        summary[policy] = {"best_mean": float(np.mean(best)), "best_sd": sd(best), "top5_mean": float(np.mean(top5)),
                           "top5_sd": sd(top5), "best": best, "top5": top5}
        print(f"{policy:6s} after {n} trained: best reward {summary[policy]['best_mean']:.4f} ± "
              f"{summary[policy]['best_sd']:.4f}, top-5 mean {summary[policy]['top5_mean']:.4f} ± "
              f"{summary[policy]['top5_sd']:.4f} (mean ± sd over seeds)")
    for what in ("best", "top5"):
        gap = paired_interval(summary["q"][what], summary["random"][what])
        if gap is not None:
            summary[f"{what}_q_minus_random"] = {"diffs": list(gap.diffs), "mean": gap.mean, "low": gap.low,
                                                 "high": gap.high}
            print(f"Q - random, {what}, paired by seed: {', '.join(f'{d:+.4f}' for d in gap.diffs)}; mean "
                  f"{gap.mean:+.4f}, 95 % interval [{gap.low:+.4f}, {gap.high:+.4f}]")
    save_json(summary, args.out / "versus.json")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for policy, color in (("q", "C0"), ("random", "C1")):
        n = min(len(r) for r in curves[policy])
        arr = np.array([r[:n] for r in curves[policy]])
        x = np.arange(1, n + 1)
        for r in arr:
            ax.plot(x, r, color=color, alpha=0.25, lw=1)
        ax.plot(x, arr.mean(0), color=color, lw=2, label=f"{'Q-learning' if policy == 'q' else 'random'} "
                f"(mean of {len(arr)} seeds)")
    ax.set(xlabel="candidates trained", ylabel="best reward so far",
           title=f"BlockQNN: Q-learning vs random search ({args.proxy} proxy)")
    ax.legend()
    save_figure(fig, args.out / "search_vs_random.png", dpi=110)
    print(f"wrote {args.out / 'search_vs_random.png'}")


def params(cfg: Config) -> int:
    return count_parameters(build_model(cfg))


def duel_configs(cfg: Config, code: str) -> dict[str, Config]:
    """The baseline (2-stack hourglass, 3 residuals per position and head, the proxy's width) and the
    searched block in the same 2-stack frame at the widest width whose parameters do not pass the
    baseline's (BlockQNN compared 17 M with 19 M)."""
    m = cfg.model
    baseline = dataclasses.replace(cfg, model=dataclasses.replace(m, name="hourglass", block_code="", num_stacks=2,
                                                                  modules_per_position=3))
    limit = params(baseline)

    def searched(width: int) -> Config:
        return dataclasses.replace(cfg, model=dataclasses.replace(m, name="blockqnn", block_code=code, num_stacks=2,
                                                                  modules_per_position=1, num_features=width))

    width = max(w for w in range(4, 4 * m.num_features + 1, 2) if params(searched(w)) <= limit)
    return {"HG-2, 3 residuals (baseline)": baseline, f"searched block, width {width}": searched(width)}


def duel(args: argparse.Namespace) -> None:
    cfg = longer(proxy_config(args.proxy, args.out), args.factor)
    results_path = args.out / "duel.json"
    results = read_json(results_path, "results") if results_path.is_file() else {}
    device = torch.device("cpu")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    nets = duel_configs(cfg, args.code)
    train_set, val_set = proxy_records(cfg, "train"), proxy_records(cfg, "val")
    for name, net in nets.items():
        for seed in range(args.seeds):
            key = f"{seed}|{name}|{net.model.block_code}"
            if key not in results:
                t0 = time.perf_counter()
                model = train_proxy(with_seed(net, seed), train_set, device)
                w, h = net.data.input_size
                complexity = measure_complexity(model, (1, 3, h, w))
                results[key] = {"accuracy": proxy_accuracy(model, net, val_set, device),
                                "params": complexity.params, "gflops": complexity.flops / 1e9,
                                "seconds": time.perf_counter() - t0}
                save_json(results, results_path)
                print(f"seed {seed} {name}: PCK {results[key]['accuracy']:.4f} ({results[key]['seconds']:.0f} s)",
                      flush=True)
    print(f"\n{cpu_line()}; {cfg.train.epochs} epochs ({args.factor}x the proxy's), {args.seeds} seeds; "
          f"{time.perf_counter() - start:.0f} s")
    print("\n| network | parameters | GFLOPs | PCK per seed | PCK mean ± sd |\n|---|---:|---:|---|---:|")
    accs = {}
    for name, net in nets.items():
        runs = [results[f"{k}|{name}|{net.model.block_code}"] for k in range(args.seeds)]
        accs[name] = [r["accuracy"] for r in runs]
        sd = float(np.std(accs[name], ddof=1)) if args.seeds > 1 else 0.0
        print(f"| {name} | {runs[0]['params'] / 1e6:.3f} M | {runs[0]['gflops']:.3f} | "
              f"{', '.join(f'{a:.4f}' for a in accs[name])} | {np.mean(accs[name]):.4f} ± {sd:.4f} |")
    base, searched = accs.values()
    diffs = [b - a for a, b in zip(base, searched)]
    print(f"\nsearched - baseline, paired by seed: {', '.join(f'{d:+.4f}' for d in diffs)} "
          f"(mean {np.mean(diffs):+.4f})")
    save_json({"results": results, "code": args.code, "diffs": diffs}, results_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("rank", "versus", "duel"):
        p = sub.add_parser(name)
        p.add_argument("--proxy", choices=["real", "synthetic"], default="real")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--seeds", type=int, default=3 if name == "versus" else 2)
        p.add_argument("--threads", type=int, default=1, help="torch threads per training (search.threads)")
        if name in ("rank", "duel"):
            p.add_argument("--factor", type=int, default=5, help="the long training's epochs / the proxy's")
        if name == "duel":
            p.add_argument("--code", required=True, help="the searched block's code (the search's best_code.txt)")
        if name == "versus":
            p.add_argument("--candidates", type=int, default=40, help="trained candidates per search")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(cpu_line(), flush=True)
    {"rank": rank, "versus": versus, "duel": duel}[args.what](args)


if __name__ == "__main__":
    main()
