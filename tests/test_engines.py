"""Inference engines: the ONNX export and ONNX Runtime against PyTorch, the compiled network's batch
handling and when ``test.compile=auto`` compiles, and the automatic mixed-precision choice (capability
checks stubbed, so the tests mean the same on every CPU)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from torch import nn

from okspose.cli import main
from okspose.config import load_config
from okspose.data.build import build_records
from okspose.fileio import save_checkpoint
from okspose.inference import compiled
from okspose.inference.compiled import AUTO_MIN_PERSONS, AUTO_MIN_PERSONS_CACHED, FixedBatch, should_compile
from okspose.inference.runtime import predict_heatmaps, resolve_amp
from okspose.models.build import build_model

SAMPLES = SHARED_DATA / "samples" / "coco"
CONFIG = CONFIGS / "coco_mini_tiny.yaml"
OVERRIDES = ["model.num_features=32"]


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters away from their initial values, so folding them into the
    convolutions is not a no-op."""
    generator = torch.Generator().manual_seed(1)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = load_config(CONFIG, OVERRIDES)
    model = _randomise_batchnorm(build_model(cfg))
    return save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict()},
                           tmp_path_factory.mktemp("ckpt") / "model.pth")


def test_export_agrees_with_pytorch_at_any_batch(checkpoint, coco_mini, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")

    from okspose.inference.onnx_engine import OnnxRuntimeNet

    out = tmp_path / "pose.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), f"data.root={coco_mini}"]) == 0
    printed = capsys.readouterr().out
    assert "16 val persons' crops" in printed, printed
    onnx.checker.check_model(str(out))
    cfg = load_config(CONFIG, OVERRIDES)
    model = build_model(cfg)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    net = OnnxRuntimeNet(out)
    for batch in (1, 5):  # the batch axis is dynamic
        x = torch.randn(batch, 3, 128, 128)
        with torch.inference_mode():
            ref = model(x)[-1]
        got = net(x)
        assert got.shape == ref.shape
        assert (got - ref).abs().max() < 1e-3 * ref.abs().max()


def test_export_int8_keeps_the_first_and_last_conv_in_float(checkpoint, coco_mini, tmp_path, capsys):
    """`okspose export --int8 --calibration N`: a QDQ graph calibrated on N training persons, checked on val
    persons, whose first conv (the pixels) and heatmap conv stay fp32, and which test.engine=onnxruntime-int8
    then finds in the cache."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from okspose.inference.quantize import float_nodes

    out = tmp_path / "pose.int8.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration", "4",
                 f"data.root={coco_mini}", "--check-persons", "4"]) == 0
    printed = capsys.readouterr().out
    train_ann = coco_mini / "annotations" / "person_keypoints_train2017.json"
    assert f"INT8, calibrated on 4 persons of {train_ann}" in printed and "within 1 crop pixel" in printed, printed
    assert "4 val persons' crops apart from calibration" in printed, printed
    graph = onnx.load(str(out))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    produced_by = {o: n for n in graph.graph.node for o in n.output}
    for name in float_nodes(graph):  # their inputs come straight from the graph input or a float op
        node = next(n for n in graph.graph.node if n.name == name)
        weight = produced_by.get(node.input[1])
        assert weight is None or weight.op_type != "DequantizeLinear", name
    cached = list(Path(os.environ["OKSPOSE_ONNX_CACHE"]).glob("*.onnx"))
    assert any(p.read_bytes() == out.read_bytes() for p in cached)


def test_int8_calibrated_on_scored_pictures_is_refused(checkpoint, coco_mini, tmp_path, capsys):
    """INT8 calibrated on val persons: `okspose test` refuses in one line before posing (AP on persons the
    ranges were fitted to would flatter INT8), and `export --int8` checks on val persons calibration did not
    read."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    on_val = [f"data.root={coco_mini}", "test.int8_calibration_ann=annotations/person_keypoints_val2017.json",
              "test.int8_calibration_images=val2017", "test.int8_calibration=4"]
    assert main(["test", "--checkpoint", str(checkpoint), "--boxes", "gt", "--engine", "onnxruntime-int8",
                 "--out", str(tmp_path / "r.json"), *on_val]) == 2
    err = capsys.readouterr().err.strip()
    assert "reads 3 pictures of the scored val split" in err and "test.int8_calibration_overlap" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r.json").exists()

    val = build_records(load_config(CONFIG, [*OVERRIDES, f"data.root={coco_mini}"]), "val").image_paths
    apart = [p for p in val if p not in val[:4]]  # persons in pictures the 4 calibration persons are not in
    assert 0 < len(apart) < len(val) - 4
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "g.onnx"), "--int8",
                 "--check-persons", "1000", *on_val]) == 0
    assert f"{len(apart)} val persons' crops apart from calibration" in capsys.readouterr().out


def test_predict_with_onnxruntime_matches_torch(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    if not SAMPLES.is_dir():
        pytest.skip(f"sample images not found at {SAMPLES}")
    images = [str(p) for p in sorted(SAMPLES.glob("*.jpg"))[:2]]
    results = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / engine
        args = ["predict", "--checkpoint", str(checkpoint), "--out", str(out), "--whole-image", "--no-vis",
                "--engine", engine, "test.fast=true", "test.amp=none", "test.compile=false", *images]
        assert main(args) == 0
        results[engine] = json.loads((out / "results.json").read_text())
    ref = np.array([r["keypoints"] for r in results["torch"]]).reshape(-1, 17, 3)
    got = np.array([r["keypoints"] for r in results["onnxruntime"]]).reshape(-1, 17, 3)
    assert len(ref) == len(images)
    np.testing.assert_allclose(got[..., :2], ref[..., :2], atol=1e-2)
    np.testing.assert_allclose(got[..., 2], ref[..., 2], atol=1e-4)


def test_fixed_batch_pads_and_splits():
    calls = []

    class Record(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x * 2

    net = FixedBatch(Record(), 4)
    x = torch.randn(10, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x), x * 2)
    assert calls == [4, 4, 4]  # 10 = 4 + 4 + 2 padded to 4


def test_auto_compiles_large_jobs_in_fp32_or_with_amx(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "can_compile", lambda device: True)
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    assert not should_compile(False, 10**6, cpu) and should_compile(True, 1, cpu)
    assert not should_compile("auto", AUTO_MIN_PERSONS - 1, cpu, "k")
    assert should_compile("auto", AUTO_MIN_PERSONS, cpu, "k")
    for amx in (False, True):  # bf16: only where AMX makes the compiled graph pay
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert should_compile("auto", AUTO_MIN_PERSONS, cpu, "k", bf16) == amx
    net = compiled.FixedBatch(nn.Identity(), 2, compiled._marker("k"))
    net(torch.zeros(1, 1))  # a first call marks the graph as in inductor's cache
    assert should_compile("auto", AUTO_MIN_PERSONS_CACHED, cpu, "k")
    assert not should_compile("auto", AUTO_MIN_PERSONS_CACHED, cpu, "other")


def test_amp_auto_on_gpus(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp("auto", cuda) == torch.float16
    assert resolve_amp("none", cuda) is None


def test_amp_auto_on_cpus_uses_bf16_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    for amx, avx512_bf16, expected in ((True, True, torch.bfloat16), (False, True, torch.bfloat16),
                                       (True, False, torch.bfloat16), (False, False, None)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda b=avx512_bf16: b)
        assert resolve_amp("auto", cpu) == expected
        assert resolve_amp("bf16", cpu) == torch.bfloat16  # pinned: the same everywhere
        assert resolve_amp("none", cpu) is None


def test_cpu_forward_passes_take_at_most_cpu_max_crops(coco_mini):
    """Poser splits a batch (persons and their mirrors) into forward passes of at most
    ``test.cpu_max_crops`` crops on a CPU, with the same keypoints as one pass over the whole batch."""
    from okspose.config import build_schema
    from okspose.data.build import build_codec, build_records
    from okspose.inference.poser import Poser

    cfg = load_config(CONFIG, [*OVERRIDES, f"data.root={coco_mini}", "test.batch_size=5", "test.flip_test=true",
                               "test.amp=none", "test.fast=false", "data.max_val_persons=7"])
    model = _randomise_batchnorm(build_model(cfg)).eval()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    records = build_records(cfg, "val")
    results = {}
    for cap in (0, 3):
        test = dataclasses.replace(cfg.test, cpu_max_crops=cap)
        poser = Poser(model, build_codec(cfg), build_schema(cfg), test, torch.device("cpu"), cfg.data.padding)
        seen.clear()
        results[cap] = poser.pose(records).keypoints
        if cap:
            assert max(seen) == cap and sum(seen) == 2 * len(records), seen
        else:
            assert max(seen) == 10, seen  # 5 persons and their mirror images in one pass
    np.testing.assert_allclose(results[3], results[0], atol=1e-2)  # oneDNN's kernels differ by batch size
    heatmaps = predict_heatmaps(model, torch.zeros(4, 3, 128, 128), poser.flip_index, None, 3)
    assert not heatmaps.requires_grad and heatmaps.shape == (4, 17, 32, 32)  # no autograd graph kept


def test_negative_cpu_max_crops_is_refused():
    from okspose.errors import ConfigError
    from okspose.run_config import load_run_config

    with pytest.raises(ConfigError, match="test.cpu_max_crops must be at least 0, got -1"):
        load_run_config(CONFIG, ["test.cpu_max_crops=-1"])
