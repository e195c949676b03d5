"""Ray as a cluster: a two-node Ray cluster on this machine (Ray's own test utility starts a head node and a
worker node, each with its own raylet and resources), a search through ``--address``, the worker node
removed mid-search, and the same rewards as the sequential executor."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import CONFIGS, HANG_S, REPO

from okspose.commands.search import run_search
from okspose.config import load_config
from okspose.search.state import STATE_FILE, load_state

TINY = ["data.input_size=[32,32]", "data.heatmap_size=[8,8]", "model.num_features=8", "model.depth=1",
        "train.epochs=1", "train.batch_size=4", "search.synthetic_train=8", "search.synthetic_val=2",
        "search.max_layers=3", "search.batch_size=4", "search.iterations=[1,1,0,0,0,0,0,0,0,1]"]


def config(out, *extra):
    return load_config(CONFIGS / "search_synthetic.yaml", [*TINY, f"search.output_dir={out}", *extra])


def test_search_on_a_two_node_cluster_survives_losing_a_node(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{REPO / 'tests'}")  # the nodes' workers import okspose
    sequential = run_search(config(tmp_path / "seq"), log=lambda _: None)

    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    out = tmp_path / "cluster"
    result: dict = {}

    def search() -> None:
        try:
            result["search"] = run_search(config(out, "search.workers=2"), address=cluster.address,
                                          log=lambda _: None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            result["error"] = err

    thread = threading.Thread(target=search)
    try:
        thread.start()
        deadline = time.monotonic() + HANG_S
        while thread.is_alive() and time.monotonic() < deadline and not (
                (out / STATE_FILE).is_file() and load_state(out).candidates):
            time.sleep(0.2)
        nodes_before = len([n for n in ray.nodes() if n["Alive"]]) if ray.is_initialized() else 0
        cluster.remove_node(worker)  # mid-search: candidates in flight on it fail and are tried again
        thread.join(timeout=HANG_S)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert nodes_before == 2
    on_cluster = result["search"].state
    rewards = {c: r.reward for c, r in sequential.state.candidates.items()}
    assert len(rewards) >= 4 and all(r.status == "ok" for r in on_cluster.candidates.values())
    assert {c: r.reward for c, r in on_cluster.candidates.items()} == rewards
    assert on_cluster.controller["q"] == sequential.state.controller["q"]
