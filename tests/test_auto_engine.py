"""test.engine=auto: the rule per kind of device (facts stubbed, so every CPU kind is checked on any machine),
the exported graphs' on-disk cache, the choice printed once and kept in the results' summary, and the
machine's speed settings not taken over from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS

from okspose.cli import main
from okspose.config import load_config
from okspose.errors import ConfigError
from okspose.fileio import save_checkpoint
from okspose.inference import onnx_engine, poser
from okspose.inference.engines import AUTO_ONNX_MIN_CROPS, choose_engine
from okspose.models.build import build_model
from okspose.run_config import load_run_config

CONFIG = CONFIGS / "coco_mini_tiny.yaml"
TINY = ["model.num_features=16", "data.max_val_persons=4", "test.batch_size=4"]
BIG = AUTO_ONNX_MIN_CROPS
# (CPU kind, native bf16): AMX Xeons and AVX512-BF16 EPYCs compute bf16 natively, AVX2-only CPUs emulate it
CPUS = [("AMX Xeon", True), ("AVX512-BF16 EPYC", True), ("AVX2-only EPYC", False)]


def _pick(device: str = "cpu", native_bf16: bool = False, onnxruntime: bool = True, cached: bool = False,
          crops: int = BIG, **settings) -> tuple[str, str, bool]:
    c = choose_engine(device, native_bf16, onnxruntime, cached, crops, **settings)
    return c.engine, c.precision, c.folded


@pytest.mark.parametrize("kind,native", CPUS)
def test_auto_on_each_kind_of_cpu(kind, native):
    """Native bf16: the folded network in bf16, whatever else is there. Without it: ONNX Runtime fp32 where
    installed and the export pays (a large job, or the graph cached), else the folded network in fp32."""
    for onnxruntime in (False, True):
        for cached in (False, True):
            for crops in (1, BIG - 1, BIG, 10 * BIG):
                got = _pick("cpu", native, onnxruntime, cached, crops)
                if native:
                    expected = ("torch", "bf16", True)
                elif onnxruntime and (cached or crops >= BIG):
                    expected = ("onnxruntime", "fp32", True)
                else:
                    expected = ("torch", "fp32", True)
                assert got == expected, (kind, onnxruntime, cached, crops)


def test_auto_on_cuda_is_the_folded_network_under_autocast():
    for onnxruntime in (False, True):
        assert _pick("cuda", True, onnxruntime) == ("torch", "bf16", True)
        assert _pick("cuda", False, onnxruntime) == ("torch", "fp16", True)  # GPUs without bf16


@pytest.mark.parametrize("kind,native", CPUS)
def test_explicit_settings_win(kind, native):
    assert _pick(native_bf16=native, engine="torch") == ("torch", "bf16" if native else "fp32", True)
    assert _pick(native_bf16=native, engine="torch", amp="none", fast=False) == ("torch", "fp32", False)
    assert _pick(native_bf16=native, fast=False) == ("torch", "bf16" if native else "fp32", False)
    assert _pick(native_bf16=native, crops=1, engine="onnxruntime") == ("onnxruntime", "fp32", True)
    assert _pick(native_bf16=native, engine="onnxruntime-int8") == ("onnxruntime-int8", "int8", True)
    assert _pick(native_bf16=native, amp="bf16") == ("torch", "bf16", True)  # emulated or not: asked for
    # fp32 asked for on a native-bf16 CPU: the fastest fp32 engine, as on any CPU
    assert _pick(native_bf16=native, amp="none") == ("onnxruntime", "fp32", True)
    assert _pick(native_bf16=native, amp="none", onnxruntime=False) == ("torch", "fp32", True)


def test_the_reason_says_why():
    assert "native bf16" in choose_engine("cpu", True, True, False, 1).reason
    assert "not installed" in choose_engine("cpu", False, False, False, BIG).reason
    assert "cached" in choose_engine("cpu", False, True, True, 1).reason
    assert "would not repay" in choose_engine("cpu", False, True, False, 1).reason
    line = choose_engine("cpu", False, True, False, BIG).line()
    assert line.startswith("pose engine: onnxruntime, folded, fp32 (") and f"{BIG} crops" in line


def test_onnx_cache_keys_exports_once_and_keeps_a_few(monkeypatch, tmp_path):
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("OKSPOSE_ONNX_CACHE", str(tmp_path / "cache"))
    cfg = load_config(CONFIG, ["model.num_features=16"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    size = tuple(cfg.data.input_size)
    key = onnx_engine.graph_key(model, size)
    assert key == onnx_engine.graph_key(poser.optimize_for_inference(model, torch.device("cpu")), size)  # folded
    other = build_model(cfg).eval()
    assert onnx_engine.graph_key(other, size) != key  # other weights
    assert onnx_engine.graph_key(model, (64, 64)) != key and onnx_engine.graph_key(model, size, "int8") != key
    exports = []
    real_export = onnx_engine.export_onnx
    monkeypatch.setattr(onnx_engine, "export_onnx", lambda *a: exports.append(1) or real_export(*a))
    first = onnx_engine.fp32_graph(model, size, key)
    second = onnx_engine.fp32_graph(model, size, key)
    assert isinstance(first, bytes) and second == tmp_path / "cache" / f"{key}.onnx" and exports == [1]
    assert second.read_bytes() == first and [p.name for p in (tmp_path / "cache").iterdir()] == [second.name]
    for i in range(onnx_engine.CACHE_KEEP + 2):
        onnx_engine.store_graph(f"k{i}", b"x")
    assert len(list((tmp_path / "cache").iterdir())) == onnx_engine.CACHE_KEEP


def test_a_small_job_takes_onnxruntime_once_its_graph_is_cached(monkeypatch, tmp_path):
    """On a CPU without native bf16 (stubbed): a small first job runs the folded network; a large one exports
    and caches the graph; then a small job of the same weights opens the cached graph."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("OKSPOSE_ONNX_CACHE", str(tmp_path))
    monkeypatch.setattr(poser, "fast_bf16_cpu", lambda: False)
    cfg = load_config(CONFIG, [*TINY, "test.engine=auto", "test.amp=auto", "test.fast=true", "test.compile=false"])
    model = build_model(cfg).eval()

    def choose(persons: int):
        return poser.Poser.from_config(model, cfg, torch.device("cpu")).prepare(persons)

    small = choose(4)
    assert (small.engine, small.precision) == ("torch", "fp32") and "would not repay" in small.reason
    assert choose(BIG).engine == "onnxruntime" and len(list(tmp_path.glob("*.onnx"))) == 1
    again = choose(4)
    assert again.engine == "onnxruntime" and "cached" in again.reason


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    cfg = load_config(CONFIG, TINY)
    torch.manual_seed(0)
    return save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict()},
                           tmp_path_factory.mktemp("auto") / "model.pth")


@pytest.mark.parametrize("native", [True, False])
def test_test_prints_the_choice_once_and_keeps_it_in_the_summary(native, untrained, coco_mini, tmp_path, capsys,
                                                                 monkeypatch):
    """`okspose test` with the engine left to auto (facts stubbed: a native-bf16 CPU, or one without
    onnxruntime): one line saying what runs and why, and the same in the summary JSON."""
    monkeypatch.setattr(poser, "fast_bf16_cpu", lambda: native)
    monkeypatch.setattr(poser, "onnx_available", lambda: False)
    monkeypatch.setattr(poser, "_announced", set())
    out = tmp_path / "results.json"
    args = ["test", str(CONFIG), *TINY, "test.engine=auto", "test.amp=auto", "test.fast=true", "test.compile=false",
            f"data.root={coco_mini}", "--checkpoint", str(untrained), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    assert main(args) == 0  # a second job of the same run: no second line
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("pose engine:")]
    precision = "bf16" if native else "fp32"
    assert lines == [f"pose engine: torch, folded, {precision} ("
                     + ("native bf16 on this CPU: first and last layers in fp32)" if native else
                        "no native bf16 on this CPU; onnxruntime is not installed (pip install 'okspose[onnx]' "
                        "for the faster fp32 engine))")]
    engine = json.loads((tmp_path / "results_summary.json").read_text())["engine"]
    assert engine == {"engine": "torch", "precision": precision, "folded": True, "compiled": False,
                      "reason": lines[0].split(" (", 1)[1][:-1]}


def test_a_checkpoint_does_not_carry_the_machine_settings(untrained):
    """The checkpoint was trained with the tiny config's pinned fp32 reference; a command reading it takes
    this machine's defaults for the speed settings, and the config's and overrides' when given."""
    from okspose.checkpoints import Checkpoint

    ckpt = Checkpoint.read(untrained)
    assert ckpt.config["test"]["engine"] == "torch" and ckpt.config["test"]["fast"] is False
    cfg = load_run_config(None, [], ckpt)
    assert (cfg.test.engine, cfg.test.amp, cfg.test.fast) == ("auto", "auto", True)
    assert cfg.test.batch_size == 4  # a setting about the network's evaluation stays
    assert load_run_config(CONFIG, TINY, ckpt).test.engine == "torch"
    assert load_run_config(None, ["test.amp=none"], ckpt).test.amp == "none"


@pytest.mark.parametrize("override,message", [
    ("test.engine=onnxruntime test.amp=bf16", "test.engine=onnxruntime runs without autocast"),
    ("test.engine=onnxruntime-int8 test.amp=fp16", "test.engine=onnxruntime-int8 runs without autocast"),
    ("test.int8_calibration=0", "test.int8_calibration must be at least 1"),
])
def test_settings_that_cannot_run_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(CONFIG, override.split())
