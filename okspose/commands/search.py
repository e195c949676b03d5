"""``okspose search``: a BlockQNN search end to end, fresh or resumed.

Layout of the output folder: ``config.yaml`` (the search's config, checked on --resume), ``state.json``
(written after every finished candidate), ``search_log.csv``, ``trainings/`` (one JSON per training),
``data/`` (the synthetic proxy data, when used), and at the end ``rewards.png``, ``best_blocks.png``,
``best_code.txt`` and ``best_config.yaml`` (ready for ``okspose train``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from okspose.config import Config
from okspose.data.synthetic import generate_synthetic_coco
from okspose.errors import ConfigError, OksposeError
from okspose.fileio import atomic_write, save_json, stamp_matches
from okspose.run_config import load_run_config
from okspose.search.controller import ControllerSettings, QController
from okspose.search.driver import DriverSettings, DriverStats, run_driver
from okspose.search.executors import Executor, RayExecutor, SequentialExecutor
from okspose.search.proxy import evaluate_candidate
from okspose.search.report import draw_blocks, plot_rewards, ranked, write_best_config, write_log
from okspose.search.state import STATE_FILE, Candidate, SearchState, load_state

CONFIG_FILE = "config.yaml"
SYNTHETIC_STAMP = "synthetic.json"
# Where candidates run does not change their rewards, so a search may resume on another executor.
WHERE_KEYS = {"search.executor", "search.workers", "search.cpus_per_candidate"}


@dataclass
class SearchResult:
    out_dir: Path
    state: SearchState
    stats: DriverStats
    best: Candidate | None


def controller_settings(cfg: Config) -> ControllerSettings:
    s = cfg.search
    return ControllerSettings(s.max_layers, s.batch_size, tuple(s.epsilons), tuple(s.iterations), s.q_init, s.q_lr,
                              s.discount, s.replay, s.seed, s.reward_scale, s.shaping, s.policy)


def _with_output_dir(cfg: Config, out_dir: Path) -> Config:
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, output_dir=str(out_dir)))


def _config_text(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def _check_resume_config(cfg: Config, out_dir: Path) -> None:
    """A resumed search must run with the settings it started with (executor settings aside), or its rewards
    would not compare."""
    saved = yaml.safe_load((out_dir / CONFIG_FILE).read_text()) if (out_dir / CONFIG_FILE).is_file() else None
    current = yaml.safe_load(_config_text(cfg))
    if saved is None:
        raise OksposeError(f"{out_dir / CONFIG_FILE}: missing; cannot check the config of the search to resume")
    diff = [f"{section}.{key}" for section in current for key in current[section]
            if saved.get(section, {}).get(key) != current[section][key] and f"{section}.{key}" not in WHERE_KEYS]
    if diff:
        raise ConfigError(f"{out_dir}: the search was started with other settings ({', '.join(diff[:5])}); "
                          f"resume it with its own {out_dir / CONFIG_FILE}")


def prepare_data(cfg: Config, out_dir: Path) -> Config:
    """The proxy's data: generate the synthetic people once under ``out_dir/data`` (and point ``data`` at
    them), or use ``data`` as configured."""
    if cfg.search.proxy_data != "synthetic":
        return cfg
    root = out_dir / "data"
    want = {"train": cfg.search.synthetic_train, "val": cfg.search.synthetic_val, "seed": cfg.search.seed}
    stamp = root / SYNTHETIC_STAMP
    if not stamp_matches(stamp, want):
        for split, n, offset in (("train", want["train"], 0), ("val", want["val"], 1)):
            generate_synthetic_coco(root, split, n, seed=2 * cfg.search.seed + offset)
        save_json(want, stamp)
    data = dataclasses.replace(cfg.data, root=str(root), train_ann="annotations/person_keypoints_train.json",
                               train_images="train", val_ann="annotations/person_keypoints_val.json",
                               val_images="val", schema="coco17")
    return dataclasses.replace(cfg, data=data)


def make_executor(cfg: Config, out_dir: Path, address: str | None) -> Executor:
    if cfg.search.executor == "sequential" and address is None:
        return SequentialExecutor(evaluate_candidate, cfg, str(out_dir))
    s = cfg.search
    return RayExecutor(evaluate_candidate, cfg, str(out_dir), workers=s.workers,
                       cpus_per_candidate=s.cpus_per_candidate, address=address)


def progress_line(c: Candidate, state: SearchState, controller: QController) -> str:
    best = ranked(state)
    head = (f"[{len(state.candidates)} blocks, episode {controller.proposed}/{controller.episodes}] "
            f"iter {c.iteration + 1} eps {c.epsilon:.1f}")
    if c.status != "ok":
        return f"{head} FAILED after {c.attempts} attempt(s): {c.error} | {c.code}"
    return (f"{head} reward {c.reward:.4f} acc {c.accuracy:.4f} {c.gflops:.3f} GFLOPs {c.params / 1e6:.3f} M, "
            f"block {c.block_gflops:.4f} GFLOPs {c.block_latency_ms:.2f} ms, {c.seconds:.1f} s | "
            f"best {best[0].reward:.4f} | {c.code}")


def run_search(cfg: Config, resume: str | Path | None = None, address: str | None = None,
               log: Callable[[str], None] = print) -> SearchResult:
    """Run (or resume, from the folder ``resume``) the search of ``cfg`` and write its reports."""
    out_dir = Path(resume) if resume is not None else Path(cfg.search.output_dir)
    cfg = _with_output_dir(cfg, out_dir)
    if resume is not None:
        _check_resume_config(cfg, out_dir)
        state = load_state(out_dir)
        log(f"resuming {out_dir}: {len(state.candidates)} candidates done, {len(state.in_flight)} re-submitted")
    else:
        if (out_dir / STATE_FILE).exists():
            raise OksposeError(f"{out_dir} already holds a search: continue it with --resume {out_dir}, "
                               "or choose another search.output_dir")
        state = SearchState()
        text = _config_text(cfg).encode()
        atomic_write(out_dir / CONFIG_FILE, lambda f: f.write(text))
    run_cfg = prepare_data(cfg, out_dir)
    controller = QController(controller_settings(cfg))
    if state.controller:
        controller.load_state_dict(state.controller)

    def on_finish(c: Candidate) -> None:
        write_log(state, out_dir / "search_log.csv")
        log(progress_line(c, state, controller))

    s = cfg.search
    executor = make_executor(run_cfg, out_dir, address)
    try:
        stats = run_driver(controller, executor, state, out_dir,
                           DriverSettings(s.mu, s.rho, s.max_attempts, s.max_tries, s.cost), on_finish)
    finally:
        executor.close()
    write_log(state, out_dir / "search_log.csv")
    plot_rewards(state, controller.schedule, out_dir / "rewards.png")
    best = ranked(state)
    if best:
        draw_blocks(best[:3], out_dir / "best_blocks.png")
        atomic_write(out_dir / "best_code.txt", lambda f: f.write(f"{best[0].code}\n".encode()))
        write_best_config(run_cfg, best[0].code, out_dir / "best_config.yaml")
    return SearchResult(out_dir, state, stats, best[0] if best else None)


def run(args: argparse.Namespace) -> int:
    result = run_search(load_run_config(args.config, args.overrides), resume=args.resume, address=args.address)
    s = result.stats
    print(f"{s.finished} candidates ({s.failed} failed) in {s.seconds:.1f} s (driver overhead {s.overhead:.2f} s); "
          f"log, plots and state in {result.out_dir}")
    if result.best is not None:
        print(f"best block (reward {result.best.reward:.4f}, accuracy {result.best.accuracy:.4f}): {result.best.code}")
        print(f"train it: okspose train {result.out_dir / 'best_config.yaml'}")
    return 0
