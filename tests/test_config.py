"""Configs ship inside the package and resolve from any working directory; geometry is checked at config
time; overrides go anywhere on the command line."""

from __future__ import annotations

import importlib.resources
import tomllib

import pytest
from conftest import REPO

from okspose.cli import main
from okspose.config import load_config, packaged_configs, resolve_config
from okspose.errors import ConfigError
from okspose.recipe.demo import DEMO_CONFIG
from okspose.run_config import load_run_config

NAMES = ["coco_aic_joint_hg8_256", "coco_hg2_256", "coco_hg8_256", "coco_mini_tiny", "demo_synthetic"]


def test_configs_are_package_data():
    folder = importlib.resources.files("okspose") / "configs"
    shipped = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert set(NAMES) <= set(shipped)
    assert packaged_configs() == shipped
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "configs/*.yaml" in package_data["okspose"]


def test_configs_load_from_the_package_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    seed = [load_config(name) for name in ("configs/coco_hg8_256.yaml", "coco_hg8_256.yaml", "coco_hg8_256")]
    assert seed[0] == seed[1] == seed[2] and seed[0].model.num_stacks == 8
    assert load_config(DEMO_CONFIG).train.epochs > 0
    (tmp_path / "coco_hg8_256.yaml").write_text("model:\n  num_stacks: 3\n")  # an existing file comes first
    assert load_config("coco_hg8_256.yaml").model.num_stacks == 3
    with pytest.raises(ConfigError, match="nor a packaged config.*coco_mini_tiny"):
        resolve_config("configs/nope.yaml")


@pytest.mark.parametrize("overrides, match", [
    (["data.heatmap_size=[64,64]"], r"128x128 / data.heatmap_size 64x64 must equal the network's stride 4"),
    (["data.input_size=[128,96]", "data.heatmap_size=[32,24]"], "128x96: both sides must be multiples of 64"),
    (["model.num_features=33"], "even num_features"),
    (["data.schema=coco18"], "unknown keypoint schema"),
])
def test_geometry_is_checked_at_config_time(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config("coco_mini_tiny", overrides)


def test_model_info_prints_the_real_output(capsys):
    assert main(["model-info", "coco_mini_tiny", "data.input_size=[192,128]", "data.heatmap_size=[48,32]"]) == 0
    assert "input 192x128 -> heatmaps 48x32 (17 joints)" in capsys.readouterr().out


def test_overrides_anywhere_and_unknown_words_refused(capsys):
    assert main(["model-info", "model.num_stacks=2", "coco_mini_tiny", "model.depth=3"]) == 0
    assert "2 stack(s), 64 features, depth 3" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["model-info", "coco_mini_tiny", "stray"])
    assert exit_info.value.code == 2 and "unrecognized arguments: stray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["model-info", "coco_mini_tiny", "--bogus"])


@pytest.mark.parametrize("override, words", [
    ("train.lr=-1", "train.lr must be at least 0, got -1.0"),
    ("train.lr=nan", "train.lr must be at least 0, got nan"),
    ("train.workers=-2", "train.workers must be at least 0, got -2"),
    ("train.epochs=0", "train.epochs must be at least 1, got 0"),
    ("train.epochs=-1", "train.epochs must be at least 1, got -1"),
    ("augment.flip_prob=2", "augment.flip_prob must be between 0 and 1, got 2.0"),
    ("data.sigma=-1", "data.sigma must be above 0, got -1.0"),
    ("test.oks_thr=1.5", "test.oks_thr must be between 0 and 1, got 1.5"),
    ("augment.scale=[1.2,0.8]", "augment.scale must be [low, high] with 0 < low <= high, got [1.2, 0.8]"),
])
def test_settings_out_of_range_stop_train_with_one_line(override, words, capsys, monkeypatch):
    """Each gave a traceback, did nothing with exit 0, or was taken silently (issue 23 item 6)."""
    monkeypatch.setattr("okspose.engine.train.train_one_epoch", lambda *a, **k: pytest.fail("trained first"))
    assert main(["train", "coco_mini_tiny", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"okspose train: error: {words}"


@pytest.mark.parametrize("option, words", [
    (["--train", "-1"], "--train: must be at least 0, got -1"),
    (["--max-people", "0"], "--max-people: must be 1 to 254, got 0"),
    (["--width", "8"], "--width: must be at least 32, got 8"),
    (["--corrupt", "1.5"], "--corrupt: must be between 0 and 1, got 1.5"),
])
def test_make_synthetic_counts_are_checked(option, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["make-synthetic", str(tmp_path / "out"), *option])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
