"""Self-describing checkpoints: a run's files, `okspose test` without a config, one-line errors for a
checkpoint that does not fit or cannot be read, and RNG states that restore whatever device wrote them."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS

from okspose.checkpoints import Checkpoint, read_checkpoint
from okspose.cli import main
from okspose.config import load_config
from okspose.engine.train import rng_state, set_rng_state, train
from okspose.errors import CheckpointError
from okspose.fileio import save_checkpoint, save_json, save_text
from okspose.models.build import build_model
from okspose.run_config import load_run_config

CONFIG = CONFIGS / "coco_mini_tiny.yaml"
TINY = ["model.num_features=16", "data.max_train_persons=8", "data.max_val_persons=8", "train.batch_size=4",
        "train.workers=0", "train.progress=false", "train.amp=none", "test.amp=none", "test.batch_size=8"]


def _train(coco_mini: Path, out: Path, *extra: str) -> Path:
    cfg = load_config(CONFIG, [f"data.root={coco_mini}", f"train.output_dir={out}", *TINY, *extra])
    train(cfg, device="cpu")
    return out


@pytest.fixture(scope="module")
def run_dir(coco_mini, tmp_path_factory) -> Path:
    """One epoch, never validated (eval_every=0, the demo's case)."""
    return _train(coco_mini, tmp_path_factory.mktemp("run"), "train.epochs=1", "train.eval_every=0")


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


def test_checkpoints_carry_their_config(run_dir):
    for name in ("checkpoint.pth", "model_best.pth"):  # model_best exists although nothing was validated
        state = read_checkpoint(run_dir / name)
        assert state["config"]["model"]["num_features"] == 16 and state["config"]["data"]["input_size"] == (128, 128)


def test_log_has_fixed_columns_and_ap_in_its_own(coco_mini, tmp_path):
    run = _train(coco_mini, tmp_path / "run", "train.epochs=2", "train.eval_every=2")
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["AP"] == "" and 0.0 <= float(rows[1]["AP"]) <= 1.0
    assert None not in rows[1] and float(rows[1]["loss"]) > 0 and rows[1]["steps"] == "2"
    assert read_checkpoint(run / "model_best.pth")["epoch"] == 1  # the validated epoch


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = [save_json({"a": 1}, tmp_path / "r.json"), save_checkpoint({"x": torch.ones(1)}, tmp_path / "c.pth")]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in written] == [mode, mode]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_writes_never_set_the_umask(tmp_path, monkeypatch):
    """Setting the umask to read it would make another thread's files world-writable for that moment."""
    mode = 0o666 & ~_current_umask()

    def no_umask(mask):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", no_umask)
    written = [save_json({"a": 1}, tmp_path / "r.json"), save_checkpoint({"x": torch.ones(1)}, tmp_path / "c.pth"),
               save_text("x", tmp_path / "t.txt")]
    assert [p.stat().st_mode & 0o777 for p in written] == [mode] * 3


def test_umask_is_set_once_where_proc_does_not_tell(tmp_path, monkeypatch):
    from okspose import fileio

    mode = 0o666 & ~_current_umask()
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(fileio, "_PROC_STATUS", tmp_path / "missing")
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    fileio._umask_once.cache_clear()
    try:
        written = [save_text(str(i), tmp_path / f"t{i}.txt") for i in range(3)]
    finally:
        fileio._umask_once.cache_clear()
    assert len(calls) == 2  # set to 0 and back, once
    assert [p.stat().st_mode & 0o777 for p in written] == [mode] * 3


def test_log_and_checkpoint_agree_after_a_crash_between_them(coco_mini, tmp_path, monkeypatch):
    """A crash after one of epoch 2's log row and checkpoint is written and before the other: resuming from
    checkpoint.pth gives a log with every epoch exactly once, the checkpoint's epoch the last."""
    from okspose.engine import train as engine

    real_save = engine.save_checkpoint
    log = tmp_path / "run" / "log.csv"

    def crash_between(state, path):
        if Path(path).name == "checkpoint.pth" and state["epoch"] == 1:
            logged = [r["epoch"] for r in csv.DictReader(log.open())]
            if "2" not in logged:  # checkpoint first: it is saved, then the run dies before the log row
                real_save(state, path)
            raise KeyboardInterrupt("crash")
        return real_save(state, path)

    monkeypatch.setattr(engine, "save_checkpoint", crash_between)
    with pytest.raises(KeyboardInterrupt):
        _train(coco_mini, tmp_path / "run", "train.epochs=2", "train.eval_every=0")
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    cfg = load_config(CONFIG, [f"data.root={coco_mini}", f"train.output_dir={tmp_path / 'run'}", *TINY,
                               "train.epochs=2", "train.eval_every=0"])
    train(cfg, resume=tmp_path / "run" / "checkpoint.pth", device="cpu")
    assert [r["epoch"] for r in csv.DictReader(log.open())] == ["1", "2"]
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pth")["epoch"] == 1  # 0-based: epoch 2 done


def test_test_without_a_config(run_dir, coco_mini, tmp_path, capsys):
    out = tmp_path / "res.json"
    code = main(["test", "--checkpoint", str(run_dir / "model_best.pth"), "--boxes", "gt", f"data.root={coco_mini}",
                 "--out", str(out), "--device", "cpu", "test.engine=torch", "test.amp=none"])
    assert code == 0 and out.is_file() and "AP" in capsys.readouterr().out


def test_predict_without_a_config(run_dir, coco_mini, tmp_path):
    image = sorted((coco_mini / "val2017").glob("*.jpg"))[0]
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoint.pth"), "--whole-image", "--out",
                 str(tmp_path / "out"), "--no-vis", str(image), "--device", "cpu", "test.flip_test=true",
                 "test.engine=torch", "test.amp=none"]) == 0
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == 1


def test_overrides_after_the_options(run_dir, coco_mini, tmp_path):
    out = tmp_path / "res.json"
    assert main(["test", str(CONFIG), "--checkpoint", str(run_dir / "checkpoint.pth"), "--boxes", "gt",
                 "--out", str(out), f"data.root={coco_mini}", *TINY, "--device", "cpu", "test.flip_test=true"]) == 0
    assert out.is_file()


def test_config_that_does_not_fit_the_checkpoint(run_dir, capsys):
    code = main(["test", "--checkpoint", str(run_dir / "checkpoint.pth"), "--boxes", "gt", "model.num_stacks=2"])
    err = _one_line_error(capsys, code)
    assert "checkpoint.pth was trained with model.num_stacks=1, the config says 2" in err


def test_bare_checkpoint_that_does_not_fit(tmp_path, capsys):
    """A checkpoint without settings (made elsewhere) is checked parameter by parameter."""
    cfg = load_config(CONFIG, ["model.num_stacks=2"])
    save_checkpoint({"model": build_model(cfg).state_dict()}, tmp_path / "bare.pth")
    code = main(["test", str(CONFIG), "--checkpoint", str(tmp_path / "bare.pth"), "--boxes", "gt"])
    assert "weights do not fit the model" in _one_line_error(capsys, code)
    code = main(["test", "--checkpoint", str(tmp_path / "bare.pth"), "--boxes", "gt"])
    assert "give the config it was trained with" in _one_line_error(capsys, code)


@pytest.mark.parametrize("damage", ["truncated", "text", "missing"])
def test_unreadable_checkpoint(run_dir, tmp_path, capsys, damage):
    bad = tmp_path / "bad.pth"
    if damage == "truncated":
        bad.write_bytes((run_dir / "checkpoint.pth").read_bytes()[:5000])
    elif damage == "text":
        bad.write_text("not a checkpoint")
    code = main(["test", str(CONFIG), "--checkpoint", str(bad), "--boxes", "gt"])
    err = _one_line_error(capsys, code)
    assert str(bad) in err and ("not found" if damage == "missing" else "not a readable checkpoint") in err


def _small_checkpoint(path: Path) -> Path:
    return save_checkpoint({"model": {"w": torch.arange(2000.0)}, "epoch": 1}, path)


def test_checkpoint_without_read_permission_says_so(tmp_path, monkeypatch):
    """Permission denied is not a corrupt file. As root chmod 000 denies nothing, so torch.load raises it."""
    path = _small_checkpoint(tmp_path / "c.pth")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root
        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value) == f"{path}: cannot read: Permission denied"


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you "
                                                               "tried to allocate 400000000000000 bytes")])
def test_out_of_memory_while_reading_a_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch, error):
    path = _small_checkpoint(tmp_path / "c.pth")

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(type(error)) as raised:
        read_checkpoint(path)
    assert raised.value is error


def test_truncated_checkpoints_are_not_readable_checkpoints(tmp_path):
    """Cut anywhere (torch's zip reader raises RuntimeError, or OSError EINVAL when cut near the end), or not
    a checkpoint at all: each is named as a file that is not a readable checkpoint."""
    raw = _small_checkpoint(tmp_path / "c.pth").read_bytes()
    for cut in (0, 10, 100, len(raw) // 2, len(raw) - 30, len(raw) - 1):
        (tmp_path / "cut.pth").write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            read_checkpoint(tmp_path / "cut.pth")
    for junk in (b"not a checkpoint", bytes(range(256)) * 10):
        (tmp_path / "junk.pth").write_bytes(junk)
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            read_checkpoint(tmp_path / "junk.pth")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(run_dir, capsys):
    code = main(["test", "--checkpoint", str(run_dir / "checkpoint.pth"), "--boxes", "gt", "--device", "cuda"])
    assert "CUDA is not available" in _one_line_error(capsys, code)


def _as_if_saved_on_gpu(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose storages say they were written on cuda:0, as a GPU run writes them."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(item, data)


def test_rng_states_restore_from_a_gpu_checkpoint(tmp_path):
    """The checkpoint is read to the CPU whatever device wrote it, so torch/numpy RNG states restore."""
    save_checkpoint({"rng": rng_state(), "model": {"w": torch.ones(2)}}, tmp_path / "cpu.pth")
    expected = torch.rand(4)
    _as_if_saved_on_gpu(tmp_path / "cpu.pth", tmp_path / "gpu.pth")
    if not torch.cuda.is_available():  # the copy really is a GPU checkpoint: a plain load wants CUDA
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(io.BytesIO((tmp_path / "gpu.pth").read_bytes()), weights_only=True)
    state = read_checkpoint(tmp_path / "gpu.pth")
    assert state["rng"]["torch"].device.type == "cpu" and state["model"]["w"].device.type == "cpu"
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(4), expected)


def test_load_run_config_takes_the_checkpoint_settings(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    cfg = load_run_config(None, ["test.flip_test=true"], Checkpoint.read(run_dir / "checkpoint.pth"))
    assert cfg.model.num_features == 16 and cfg.test.flip_test and cfg.data.max_val_persons == 8
    with pytest.raises(CheckpointError, match="data.input_size"):
        load_run_config(None, ["data.input_size=[256,256]", "data.heatmap_size=[64,64]"],
                        Checkpoint.read(run_dir / "checkpoint.pth"))


def test_init_weights_starts_a_fresh_run_from_a_checkpoints_model(run_dir, coco_mini, tmp_path, capsys):
    """train.init_weights (fine-tuning, e.g. after synthetic pre-training): the network starts from that model,
    the optimizer, schedule and epochs from scratch. With lr 0 the trained parameters are the given ones."""
    start = read_checkpoint(run_dir / "model_best.pth")["model"]
    out = _train(coco_mini, tmp_path / "tuned", "train.epochs=1", "train.eval_every=0", "train.lr=0",
                 f"train.init_weights={run_dir / 'model_best.pth'}")
    tuned = read_checkpoint(out / "checkpoint.pth")
    assert tuned["epoch"] == 0 and tuned["optimizer"]["param_groups"][0]["lr"] == 0
    params = [name for name, _ in build_model(load_config(CONFIG, TINY)).named_parameters()]
    assert params and all(torch.equal(tuned["model"][name], start[name]) for name in params)
    fresh = read_checkpoint(_train(coco_mini, tmp_path / "fresh", "train.epochs=1", "train.eval_every=0",
                                   "train.lr=0") / "checkpoint.pth")
    assert not all(torch.equal(fresh["model"][name], start[name]) for name in params)
    bad = load_config(CONFIG, [f"data.root={coco_mini}", f"train.output_dir={tmp_path / 'bad'}", *TINY,
                               "model.num_features=32", f"train.init_weights={run_dir / 'model_best.pth'}"])
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        train(bad, device="cpu")


def test_a_checkpoint_holding_a_retired_setting_still_loads(run_dir, tmp_path):
    """A checkpoint written before search.failed_reward was retired stores it in its config; the command
    reading it drops the setting instead of refusing the checkpoint."""
    state = read_checkpoint(run_dir / "checkpoint.pth")
    state["config"]["search"]["failed_reward"] = 0.0
    old = tmp_path / "old.pth"
    torch.save(state, old)
    cfg = load_run_config(None, [], Checkpoint.read(old))
    assert cfg.model.num_features == 16 and not hasattr(cfg.search, "failed_reward")


class _RunsCode:
    """A pickle that would run a shell command when unpickled without the weights-only check."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["zip", "legacy", "plain pickle"])
def test_a_code_running_pickle_is_refused_without_advice_to_disable_the_check(tmp_path, capsys, how):
    """Nothing runs, and the message says why the file was refused, not that it is corrupt, and never
    suggests weights_only=False (issue 23 item 8)."""
    import pickle
    import warnings

    marker, path = tmp_path / "ran", tmp_path / "evil.pth"
    state = {"model": {"w": torch.zeros(1)}, "extra": _RunsCode(marker)}
    if how == "plain pickle":
        path.write_bytes(pickle.dumps(state, protocol=4))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=how == "zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
    text = str(err.value)
    assert not marker.exists() and not caught, caught
    assert "weights_only" not in text and "\n" not in text
    if how != "plain pickle":  # protocol 4 stops the unpickler before it reaches the global
        assert "holds objects that a weights-only load refuses (the global posix.system)" in text
        assert "corrupt" not in text
    assert main(["test", "coco_mini_tiny", "--checkpoint", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"okspose test: error: {text}"
