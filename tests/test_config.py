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
