"""``okspose search`` end to end on a tiny proxy: reports, the searched network in ``okspose train`` /
``okspose test``, Ray (2 workers) giving the rewards of the sequential run, failures retried then
recorded, SIGKILL of the driver then --resume without retraining, and the MPII proxy."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, HANG_S, REPO, SHARED_DATA
from search_flaky import flaky_evaluate

from okspose.cli import main
from okspose.commands.search import run_search
from okspose.config import load_config
from okspose.data.build import build_codec
from okspose.data.dataset import TopDownDataset
from okspose.data.mpii import load_mpii_records, pckh
from okspose.data.transforms import box_to_center_scale
from okspose.errors import ConfigError, DataError
from okspose.evaluation import evaluate_keypoints, format_stats
from okspose.inference.poser import Poser
from okspose.inference.runtime import normalize_images
from okspose.inference.scoring import summary_path
from okspose.keypoints import MPII16
from okspose.search import proxy
from okspose.search.controller import ControllerSettings, QController
from okspose.search.driver import DriverSettings, run_driver
from okspose.search.executors import RayExecutor, SequentialExecutor
from okspose.search.proxy import TRAININGS_DIR, candidate_config, evaluate_candidate
from okspose.search.state import SearchState, load_state

TINY = ["data.input_size=[32,32]", "data.heatmap_size=[8,8]", "model.num_features=8", "model.depth=1",
        "train.epochs=1", "train.batch_size=4", "search.synthetic_train=4", "search.synthetic_val=2",
        "search.max_layers=3", "search.batch_size=2"]
MPII = SHARED_DATA / "samples" / "mpii"


def tiny_config(out: Path, *extra: str):
    return load_config(CONFIGS / "search_synthetic.yaml",
                       [*TINY, f"search.output_dir={out}", "search.iterations=[1,1,0,0,0,0,0,0,0,1]", *extra])


def trainings(out: Path) -> Counter:
    """Finished trainings per code, from the one-file-per-training records."""
    return Counter(json.loads(p.read_text())["code"] for p in (out / TRAININGS_DIR).glob("*.json"))


def test_search_writes_reports_and_its_best_block_trains_and_tests(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["search", str(CONFIGS / "search_synthetic.yaml"), *TINY, f"search.output_dir={out}",
            "search.iterations=[1,1,0,0,0,0,0,0,0,1]"]
    assert main(args) == 0
    text = capsys.readouterr().out
    state = load_state(out)
    assert text.count("] iter ") == len(state.candidates) == state.trainings >= 3
    assert all(n == 1 for n in trainings(out).values()) and set(trainings(out)) == set(state.candidates)
    # The schedule asked for 3 iterations of search.batch_size=2 blocks: 6 proposals, all with their rewards.
    assert state.controller["iteration"] == 3 and not state.controller["batch"]
    memory = state.controller["memory"]
    assert len(memory) == 6 and {code for code, _ in memory} == set(state.candidates)
    assert all(reward == state.candidates[code].reward for code, reward in memory)
    for name in ("search_log.csv", "rewards.png", "best_blocks.png", "best_code.txt", "best_config.yaml"):
        assert (out / name).stat().st_size > 0, name
    # The log holds every candidate once; reward = accuracy - mu ln(block GFLOPs) - rho ln(density) from its columns,
    # and the accuracy is what its training measured.
    rows = list(csv.DictReader((out / "search_log.csv").open()))
    assert [r["code"] for r in rows] == sorted(state.candidates, key=lambda c: state.candidates[c].order)
    measured = {json.loads(p.read_text())["code"]: json.loads(p.read_text()) for p in (out / TRAININGS_DIR).glob("*")}
    mu = rho = 0.01  # search_synthetic.yaml
    for r in rows:
        acc, gflops, density = float(r["accuracy"]), float(r["block_gflops"]), float(r["density"])
        assert r["status"] == "ok" and 0.0 <= acc <= 1.0 and float(r["gflops"]) > gflops > 0 and density > 0
        assert acc == measured[r["code"]]["accuracy"] and gflops == measured[r["code"]]["block_gflops"]
        assert float(r["reward"]) == pytest.approx(acc - mu * math.log(gflops) - rho * math.log(density), abs=1e-12)
        assert float(r["reward"]) == state.candidates[r["code"]].reward
    best = max(state.candidates.values(), key=lambda c: c.reward)
    assert (out / "best_code.txt").read_text().strip() == best.code and best.code in text
    assert f"best block (reward {best.reward:.4f}, accuracy {best.accuracy:.4f}): {best.code}" in text
    assert main(args) == 2  # the folder holds a search: asks for --resume
    assert "--resume" in capsys.readouterr().err
    overrides = [f"train.output_dir={tmp_path / 'best'}", "train.eval_every=0", "train.progress=false",
                 "train.amp=none", "test.batch_size=8", "test.engine=torch", "test.amp=none"]
    assert main(["train", str(out / "best_config.yaml"), *overrides]) == 0
    capsys.readouterr()
    results = tmp_path / "results.json"
    assert main(["test", str(out / "best_config.yaml"), *overrides, "--checkpoint",
                 str(tmp_path / "best" / "checkpoint.pth"), "--device", "cpu", "--out", str(results),
                 "test.engine=torch", "test.amp=none"]) == 0
    # The printed stats are pycocotools' on the written results and the val set of the searched config.
    stats = evaluate_keypoints(load_config(out / "best_config.yaml").data_path("val_ann"), results)
    assert json.loads(summary_path(results).read_text())["AP"] == stats["AP"]
    assert format_stats(stats) in capsys.readouterr().out
    assert len(json.loads(results.read_text())) > 0


@pytest.mark.parametrize("config", ["coco_blockqnn_256.yaml", "coco_hg2_3mod_256.yaml"])
def test_searched_network_and_hg2_baseline_train_and_test(config, coco_mini, tmp_path, capsys):
    overrides = [f"data.root={coco_mini}", "data.input_size=[64,64]", "data.heatmap_size=[16,16]",
                 "model.num_features=16", "model.depth=2", "train.epochs=1", "train.batch_size=8", "train.workers=0",
                 "train.amp=none", "train.eval_every=0", "train.progress=false", "data.max_train_persons=8",
                 "data.max_val_persons=8", f"train.output_dir={tmp_path}", "test.batch_size=8",
                 "test.flip_test=false", "test.engine=torch", "test.amp=none"]
    assert main(["train", str(CONFIGS / config), *overrides]) == 0
    assert main(["test", str(CONFIGS / config), *overrides, "--checkpoint", str(tmp_path / "checkpoint.pth"),
                 "--device", "cpu"]) == 0
    assert "AP" in capsys.readouterr().out


def test_sigkill_then_resume_trains_no_finished_candidate_again(tmp_path):
    out = tmp_path / "search"
    overrides = [*TINY, f"search.output_dir={out}", "search.batch_size=3", "search.iterations=[2,1,0,0,0,0,0,0,0,1]"]
    cmd = [sys.executable, "-m", "okspose.cli", "search", str(CONFIGS / "search_synthetic.yaml"), *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    lines = 0
    for line in proc.stdout:
        lines += "] iter " in line
        if lines == 4:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=HANG_S)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    finished_before = set(load_state(out).candidates)
    assert len(finished_before) >= 4
    assert main(["search", str(CONFIGS / "search_synthetic.yaml"), *overrides, "--resume", str(out)]) == 0
    state = load_state(out)
    counts = trainings(out)
    assert all(counts[code] == 1 for code in finished_before)  # never trained again
    assert set(counts) == set(state.candidates) and len(state.candidates) > len(finished_before)
    assert state.controller["iteration"] == 4 and not state.in_flight
    # the resumed search is the uninterrupted one
    fresh = run_search(load_config(CONFIGS / "search_synthetic.yaml", [*overrides[:-2],
                       f"search.output_dir={tmp_path / 'fresh'}", *overrides[-2:]]), log=lambda _: None)
    assert {c: r.reward for c, r in fresh.state.candidates.items()} == {
        c: r.reward for c, r in state.candidates.items()}


class RecordingExecutor:
    """Passes everything to ``inner`` and keeps every outcome it returns, retries included (the search state
    keeps only each candidate's last one)."""

    def __init__(self, inner):
        self.inner, self.capacity, self.outcomes = inner, inner.capacity, []

    def submit(self, code: str) -> None:
        self.inner.submit(code)

    def wait(self):
        out = self.inner.wait()
        self.outcomes += out
        return out

    def close(self) -> None:
        self.inner.close()


def run_flaky(executor, out: Path) -> tuple[SearchState, list]:
    controller = QController(ControllerSettings(max_layers=2, batch_size=4, iterations=(1, 0, 0, 0, 0, 0, 0, 0, 0, 1),
                                                seed=5))
    state = SearchState()
    recording = RecordingExecutor(executor)
    try:
        run_driver(controller, recording, state, out, DriverSettings(mu=0.0, rho=0.0, max_attempts=2),
                   lambda c: None)
    finally:
        recording.close()
    return state, recording.outcomes


MAX_POOLING = "RuntimeError: max pooling is not allowed here"  # search_flaky's error, as the state records it


def check_flaky(state: SearchState, outcomes: list) -> list[str]:
    """The checks both executors pass; returns the errors of the first tries of the codes that then trained."""
    failed = {c for c, r in state.candidates.items() if r.status == "failed"}
    assert failed and failed == {c for c in state.candidates if "max" in c}
    assert failed != set(state.candidates)
    assert all(math.isnan(state.candidates[c].reward) and state.candidates[c].error == MAX_POOLING for c in failed)
    assert all(r.attempts == 2 for r in state.candidates.values())
    assert state.trainings == 2 * len(state.candidates) == len(outcomes) and not state.in_flight
    tries = {code: [o for o in outcomes if o.code == code] for code in state.candidates}
    for code, (first, second) in tries.items():
        if code in failed:
            assert first.error == second.error == MAX_POOLING
        else:
            assert first.error is not None and first.result is None  # the first try failed ...
            assert second.error is None and second.result["accuracy"] == len(code) / 100  # ... the retry trained
            assert state.candidates[code].accuracy == len(code) / 100 and state.candidates[code].error == ""
    return [tries[code][0].error for code in state.candidates if code not in failed]


def test_failed_candidates_are_retried_then_recorded(tmp_path):
    first_errors = check_flaky(*run_flaky(SequentialExecutor(flaky_evaluate, str(tmp_path), False), tmp_path))
    assert first_errors and set(first_errors) == {"RuntimeError: first try fails"}


@pytest.fixture
def ray_workers_import_tests(monkeypatch):
    """Ray workers inherit the driver's environment: let them import okspose and this test module."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{REPO / 'tests'}")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


def test_ray_retries_killed_workers_then_records_failures(tmp_path, ray_workers_import_tests):
    first_errors = check_flaky(*run_flaky(RayExecutor(flaky_evaluate, str(tmp_path), True, workers=2), tmp_path))
    assert first_errors
    # the first try of every code that then trained killed its worker (os._exit): Ray reports a dead worker
    assert all(e.startswith("WorkerCrashedError: ") and "died" in e.lower() for e in first_errors), first_errors


def test_ray_with_two_workers_gives_the_sequential_rewards(tmp_path, ray_workers_import_tests):
    sequential = run_search(tiny_config(tmp_path / "seq"), log=lambda _: None)
    on_ray = run_search(tiny_config(tmp_path / "ray", "search.executor=ray", "search.workers=2"),
                        log=lambda _: None)
    rewards = {c: r.reward for c, r in sequential.state.candidates.items()}
    assert len(rewards) >= 3
    assert {c: r.reward for c, r in on_ray.state.candidates.items()} == rewards
    assert sequential.state.controller["q"] == on_ray.state.controller["q"]
    assert on_ray.state.trainings == len(rewards)


def test_mpii_reader_and_pckh():
    records = load_mpii_records(MPII / "test_mpii.json", MPII)
    raw = json.loads((MPII / "test_mpii.json").read_text())
    assert len(records) == len(raw) == 5
    first = raw[0]
    np.testing.assert_allclose(records.keypoints[0, :, :2], np.array(first["joints"]) - 1)
    side = 200 * first["scale"]
    np.testing.assert_allclose(records.boxes[0, 2:], [side, side])
    centre = np.array(first["center"]) - 1 + [0, 15 * first["scale"]]
    np.testing.assert_allclose(records.boxes[0, :2] + side / 2, centre)
    gt = records.keypoints
    head = np.linalg.norm(gt[:, 9, :2] - gt[:, 8, :2], axis=1)  # head top - upper neck
    assert pckh(gt, gt) == 1.0
    shifted = gt.copy()
    shifted[:, :8, 0] += 0.6 * head[:, None]  # 8 of 16 joints beyond half a head
    labelled = gt[..., 2] > 0
    assert pckh(shifted, gt) == pytest.approx(labelled[:, 8:].sum() / labelled.sum())


def test_mpii_bad_record_names_file_and_record(tmp_path):
    raw = json.loads((MPII / "test_mpii.json").read_text())
    raw[2]["joints"] = raw[2]["joints"][:10]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"bad.json: record 2: .*16 \[x, y\] pairs"):
        load_mpii_records(bad, MPII)


class _Oracle(torch.nn.Module):
    """A "network" that knows the crops of a set of persons and answers each with the heatmaps of given
    keypoints (their training targets): the proxy's accuracy is then known exactly."""

    def __init__(self, samples: list[dict]):
        super().__init__()
        self.crops = normalize_images(torch.stack([s["image"] for s in samples]), torch.device("cpu"))
        self.targets = torch.stack([s["target"] for s in samples])
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the poser looks at the parameters' layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x[:, None] - self.crops[None]).abs().amax(dim=(2, 3, 4))
        assert (d.min(1).values == 0).all(), "a crop the oracle does not know"
        return self.targets[d.argmin(1)]


MPII_PROXY = ["search.proxy_data=mpii", f"data.root={MPII}", "data.train_ann=test_mpii.json", "data.train_images=.",
              "data.val_ann=test_mpii.json", "data.val_images=.", "data.schema=mpii16"]


def test_mpii_proxy_measures_pckh(monkeypatch):
    cfg = load_config(CONFIGS / "search_synthetic.yaml", [*TINY, *MPII_PROXY])
    trained = []
    train_proxy = proxy.train_proxy
    monkeypatch.setattr(proxy, "train_proxy", lambda *args: trained.append(train_proxy(*args)) or trained[-1])
    code = "1 conv3 0; 2 add 0 1"
    result = evaluate_candidate(code, cfg)
    assert result["params"] > 0 and result["density"] == 1.0
    model_cfg = candidate_config(cfg, "1 conv3 0").model
    assert model_cfg.name == "blockqnn" and model_cfg.block_code == "1 conv3 0"
    # The accuracy is PCKh@0.5 of the trained network on the val persons, written out here.
    val = load_mpii_records(MPII / "test_mpii.json", MPII)
    gt = val.keypoints
    head = np.linalg.norm(gt[:, 9, :2] - gt[:, 8, :2], axis=1)  # upper neck - head top
    labelled = gt[..., 2] > 0
    kps, done, _ = Poser.from_config(trained[0], candidate_config(cfg, code), torch.device("cpu")).keypoints_of(val)
    assert done.all()
    hits = np.linalg.norm(kps[..., :2] - gt[..., :2], axis=-1) <= 0.5 * head[:, None]
    assert result["accuracy"] == pytest.approx(hits[labelled].mean(), abs=1e-12)

    # Oracles (at 128x128, where decoding is exact to a small fraction of a head): a network that predicts the
    # labels scores 1; one whose joints 0-7 are 0.6 head sizes off and joints 8-15 0.4 (beyond PCKh@0.5, and
    # within it; a tenth of the box would count neither) scores the share of labelled joints 8-15; at
    # pck_thr 0.7 both are hits.
    big = load_config(CONFIGS / "search_synthetic.yaml", [*TINY, *MPII_PROXY, "data.input_size=[128,128]",
                                                          "data.heatmap_size=[32,32]"])
    centers = box_to_center_scale(val.boxes, 1.0, big.data.padding)[0]
    for shift, thr, expected in ((0.0, 0.5, 1.0), (0.6, 0.5, labelled[:, 8:].sum() / labelled.sum()),
                                 (0.6, 0.7, 1.0)):
        moved = copy.deepcopy(val)
        off = np.where(np.arange(16) < 8, shift, 2 * shift / 3) * head[:, None]  # 0.6 and 0.4 head sizes
        moved.keypoints[..., 0] -= np.sign(gt[..., 0] - centers[:, :1]) * off  # towards the crop's centre
        dataset = TopDownDataset(moved, build_codec(big), MPII16, None, big.data.padding)
        samples = [dataset[i] for i in range(len(dataset))]
        assert (np.stack([s["target_weight"].numpy() for s in samples]) == labelled).all()  # all in the crops
        big.search.pck_thr = thr
        accuracy = proxy.proxy_accuracy(_Oracle(samples), big, proxy.proxy_records(big, "val"), torch.device("cpu"))
        assert accuracy == pytest.approx(expected, abs=1e-12), (shift, thr)


def test_resume_checks_the_settings_but_not_the_executor(tmp_path):
    out = tmp_path / "search"
    run_search(tiny_config(out, "search.iterations=[1,0,0,0,0,0,0,0,0,0]"), log=lambda _: None)
    with pytest.raises(ConfigError, match=r"other settings \(search.mu\)"):
        run_search(tiny_config(out, "search.iterations=[1,0,0,0,0,0,0,0,0,0]", "search.mu=0.5"), resume=out)
    done = run_search(tiny_config(out, "search.iterations=[1,0,0,0,0,0,0,0,0,0]", "search.workers=3"), resume=out,
                      log=lambda _: None)
    assert done.stats.finished == 0 and done.state.trainings == len(done.state.candidates)
