"""The one inference path: person records -> crops -> heatmaps (flip test) -> image keypoints.

Validation during training, ``okspose test``, ``ablation``, ``predict`` and the demo all pose through a
:class:`Poser`. It prepares the network once (BatchNorm folded and channels_last when ``test.fast``),
decodes each picture once for all of its persons, and batches crops across pictures. Which images a call
works on is the caller's choice (a rank's shard, a chunk of video frames): nothing here knows about
processes.

Notation: N person records, K joints, crops of ``(W, H) = codec.input_size`` pixels. Boxes are ``xywh`` in
image pixels; returned keypoints are [N, K, 3] arrays of (x, y) in image pixels and the joint score, the
maximum of the (flip-averaged) heatmap, near 1 for a confident joint.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from okspose.checkpoints import Checkpoint
from okspose.config import Config, TestConfig, build_schema
from okspose.data.build import build_codec
from okspose.data.codec import HeatmapCodec
from okspose.data.crops import ImageCrops, crop_persons, person_centers_scales
from okspose.data.records import OnError, PersonRecords
from okspose.data.transforms import crop_to_image
from okspose.errors import OksposeError
from okspose.inference.compiled import compile_for_inference, compile_key, should_compile
from okspose.inference.engines import EngineChoice, choose_engine
from okspose.inference.instances import PosedInstances
from okspose.inference.nms import crop_areas
from okspose.inference.onnx_engine import OnnxRuntimeNet, cached_graph, fp32_graph, graph_key, onnx_available
from okspose.inference.quantize import Calibration, int8_graph
from okspose.inference.runtime import fast_bf16_cpu, normalize_images, optimize_for_inference, predict_heatmaps
from okspose.keypoints import KeypointSchema
from okspose.models.build import checkpoint_model
from okspose.progress import progress as progress_bar

_CROP_KEYS = ("image", "center", "scale", "index")
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_announced: set[str] = set()  # engine lines printed by this process: each once per run


class Poser:
    """A pose network ready for inference, with everything needed to turn person boxes into keypoints.

    Holding the prepared network (and the engine chosen on the first job) lets every caller pose through
    the same code path without paying the preparation twice.

    Args:
        model: the pose network; takes normalised float crops [B, 3, H, W] and returns heatmaps
            [B, K, h, w] (or one tensor per stack, the last one being used). Put into eval mode while
            posing and restored afterwards; BatchNorm is folded into a copy when ``test.fast``.
        codec: the heatmap geometry the network was trained with.
        schema: the keypoint schema (K joints, left/right flip pairs).
        test: inference settings (batch size, flip test, decoder, AMP, fast/compile/engine); the engine is
            chosen by :func:`~okspose.inference.engines.choose_engine` on the first job (:attr:`choice`).
        device: where the network runs; ``model`` must already be there unless ``test.fast`` (which moves
            its copy).
        padding: factor by which each aspect-fixed box is grown into its crop region.
        workers: DataLoader workers that read and crop pictures (0: in this process).
        on_error: what an unreadable picture does: stop with its :class:`DataError` ("raise"), or be
            listed in :attr:`PosedInstances.skipped` ("skip").
        calibration: the crops INT8 is calibrated on (``test.engine=onnxruntime-int8`` only).
    """

    def __init__(self, model: nn.Module, codec: HeatmapCodec, schema: KeypointSchema, test: TestConfig,
                 device: torch.device, padding: float = 1.25, workers: int = 0, on_error: OnError = "raise",
                 calibration: Calibration | None = None) -> None:
        self.model = optimize_for_inference(model, device) if test.fast else model
        self.net: nn.Module | OnnxRuntimeNet | None = None  # what runs the crops; chosen by the first job
        self.choice: EngineChoice | None = None  # which engine that is, and why
        self.codec, self.schema, self.test, self.device = codec, schema, test, device
        self.padding, self.workers, self.on_error, self.calibration = padding, workers, on_error, calibration
        self.amp_dtype: torch.dtype | None = None  # autocast of the torch engine, set with the engine
        self.flip_index = schema.flip_index() if test.flip_test else None
        self.max_crops = test.cpu_max_crops if device.type == "cpu" else 0
        self.channels_last = next(self.model.parameters()).is_contiguous(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, model: nn.Module, cfg: Config, device: torch.device,
                    on_error: OnError | None = None) -> Poser:
        """Build a poser from a run configuration, so every command poses with the settings it trained with.

        Args:
            model: the pose network (see :class:`Poser`).
            cfg: the run configuration; its codec, schema, ``test``, ``data.padding``, ``train.workers`` and
                ``data.on_error`` are used.
            device: where the network runs.
            on_error: overrides ``cfg.data.on_error`` when given.

        Returns:
            Poser: the configured poser.
        """
        return cls(model, build_codec(cfg), build_schema(cfg), cfg.test, device, cfg.data.padding,
                   cfg.train.workers, on_error or cfg.data.on_error, Calibration(cfg, cfg.test.int8_calibration))

    @classmethod
    def from_checkpoint(cls, cfg: Config, checkpoint: Checkpoint, device: torch.device,
                        on_error: OnError | None = None) -> Poser:
        """Build a poser for a saved checkpoint: :meth:`from_config` with ``cfg``'s network holding its weights.

        Args:
            cfg: the run configuration (network, codec, schema, test settings).
            checkpoint: the weights to load (see :func:`~okspose.models.build.checkpoint_model`).
            device: where the network runs; the model is moved there.
            on_error: overrides ``cfg.data.on_error`` when given.

        Returns:
            Poser: the configured poser.
        """
        return cls.from_config(checkpoint_model(cfg, checkpoint).to(device), cfg, device, on_error)

    def pose(self, records: PersonRecords, progress: bool = False) -> PosedInstances:
        """Pose every record's box, reading each picture from its file once (in loader workers when configured).

        Args:
            records: N person records (boxes ``xywh`` in image pixels, box scores, image paths and ids).
            progress: show a progress bar over pictures.

        Returns:
            PosedInstances: the records whose picture could be read, their keypoints [M, K, 3] (x, y in image
            pixels, joint score), crop areas [M] and the messages of skipped pictures.
        """
        return self._posed(records, *self.keypoints_of(records, progress))

    def keypoints_of(self, records: PersonRecords, progress: bool = False) -> tuple[np.ndarray, np.ndarray,
                                                                                     list[str]]:
        """Pose every record's box and return raw arrays aligned with ``records`` (no instance selection).

        Args:
            records: N person records (boxes ``xywh`` in image pixels, image paths).
            progress: show a progress bar over pictures.

        Returns:
            tuple:
            - keypoints (np.ndarray): float64 [N, K, 3], (x, y) in image pixels and the joint score; rows
              of unread pictures stay zero.
            - done (np.ndarray): bool [N], True for the records that were posed.
            - skipped (list[str]): one message per picture that could not be read (``on_error="skip"``).
        """
        dataset = ImageCrops(records, self.codec.input_size, self.padding, self.on_error)
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        return self._run(progress_bar(loader, desc="pose", unit="img", enabled=progress, leave=False), len(records))

    def pose_decoded(self, images: Mapping[int, np.ndarray], records: PersonRecords) -> PosedInstances:
        """Pose records on pictures already in memory (a picture decoded for a detector, a video frame).

        Args:
            images: ``images[image_id]`` is the RGB uint8 picture [H, W, 3] of every record with that
                ``image_id``; every image id of ``records`` must be present.
            records: N person records (boxes ``xywh`` in image pixels); their paths are not read.

        Returns:
            PosedInstances: all N records, their keypoints [N, K, 3] (x, y in image pixels, joint score) and
            crop areas [N]; ``skipped`` is empty.
        """
        centers, scales = person_centers_scales(records, self.codec.input_size, self.padding)

        def items() -> Iterator[dict]:
            for image_id in dict.fromkeys(records.image_ids.tolist()):
                index = np.flatnonzero(records.image_ids == image_id)
                yield {"index": torch.from_numpy(index), "center": torch.from_numpy(centers[index]),
                       "scale": torch.from_numpy(scales[index]),
                       "image": crop_persons(images[image_id], centers[index], scales[index], self.codec.input_size)}

        return self._posed(records, *self._run(items(), len(records)))

    def _run(self, items: Iterable[dict], n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        keypoints = np.zeros((n, self.schema.num_joints, 3))
        done = np.zeros(n, dtype=bool)
        skipped: list[str] = []
        was_training = self.model.training
        self.model.eval()
        self.prepare(n)
        try:
            for batch in _batches(items, self.test.batch_size, skipped):
                idx = batch["index"].numpy()
                keypoints[idx] = self.crop_keypoints(batch["image"], batch["center"].numpy(),
                                                     batch["scale"].numpy())
                done[idx] = True
        finally:
            self.model.train(was_training)
        return keypoints, done, skipped

    def crop_keypoints(self, crops: torch.Tensor, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Run the network on a batch of crops and map the decoded keypoints back to the image.

        Args:
            crops: uint8 RGB crops [B, 3, H, W] with ``(W, H) = codec.input_size``, unrotated and unflipped.
            centers: [B, 2] (x, y) crop-region centres in image pixels.
            scales: [B, 2] (width, height) of the crop regions in image pixels.

        Returns:
            np.ndarray: float64 [B, K, 3], (x, y) in image pixels and the heatmap maximum as joint score.
        """
        images = normalize_images(crops, self.device, self.channels_last)
        self.prepare(len(crops))
        heatmaps = predict_heatmaps(self.net, images, self.flip_index, self.amp_dtype, self.max_crops)
        xy, maxvals = self.codec.decode(heatmaps, self.test.decode)
        out = np.empty((len(crops), self.schema.num_joints, 3))
        out[..., :2] = crop_to_image(xy, centers, scales, None, self.codec.input_size)
        out[..., 2] = maxvals
        return out

    @functools.cached_property
    def graph_key(self) -> str:
        """The key of this network's fp32 ONNX graph in the on-disk cache."""
        return graph_key(self.model, self.codec.input_size)

    def prepare(self, persons: int) -> EngineChoice:
        """Choose, once per run, what runs the crops (:func:`~okspose.inference.engines.choose_engine`, judged
        by the first job's ``persons``), build it and print the choice. Posing calls it; call it first to
        choose for a job of known size (a benchmark's)."""
        if self.choice is not None:
            return self.choice
        crops = persons * (2 if self.flip_index is not None else 1)
        native_bf16 = fast_bf16_cpu() if self.device.type == "cpu" else torch.cuda.is_bf16_supported()
        t = self.test
        choose = functools.partial(choose_engine, self.device.type, native_bf16, onnx_available(), crops=crops,
                                   engine=t.engine, amp=t.amp, fast=t.fast)
        choice = choose(cached=True)
        if choice.engine == "onnxruntime" and t.engine == "auto":  # only then hash the weights (HG-8: ~0.3 s)
            choice = choose(cached=cached_graph(self.graph_key) is not None)
        if choice.engine == "onnxruntime":
            self.net = OnnxRuntimeNet(fp32_graph(self.model, self.codec.input_size, self.graph_key))
        elif choice.engine == "onnxruntime-int8":
            if self.calibration is None:
                raise OksposeError("test.engine=onnxruntime-int8 needs calibration crops: build the Poser from a "
                                   "config (Poser.from_config) or pass calibration=")
            self.net = OnnxRuntimeNet(int8_graph(self.model, self.codec.input_size, self.calibration))
        else:
            self.amp_dtype = _PRECISIONS[choice.precision]
            self.net = self._torch_net(persons) if choice.folded else self.model
            choice = dataclasses.replace(choice, compiled=self.net is not self.model)
        self.choice = choice
        _announce(choice.line())
        return choice

    def _torch_net(self, persons: int) -> nn.Module:
        """The folded network, compiled by inductor where ``test.compile`` says so for a job of ``persons``."""
        per_call = self.test.batch_size * (2 if self.flip_index is not None else 1)
        per_call = min(per_call, self.max_crops) if self.max_crops > 0 else per_call
        key = compile_key(self.model, per_call, self.codec.input_size, self.amp_dtype, self.test.compile_mode,
                          self.device)
        if not should_compile(self.test.compile, persons, self.device, key, self.amp_dtype):
            return self.model
        return compile_for_inference(self.model, per_call, self.test.compile_mode, key)

    def _posed(self, records: PersonRecords, keypoints: np.ndarray, done: np.ndarray,
               skipped: list[str]) -> PosedInstances:
        keep = np.flatnonzero(done)
        w, h = self.codec.input_size
        areas = crop_areas(records.boxes[keep], w / h, self.padding)
        return PosedInstances(records.subset(keep), keypoints[keep], areas, skipped)


def _announce(line: str) -> None:
    """Print ``line`` on stderr once per process, and only on the first rank under torchrun."""
    if line not in _announced and int(os.environ.get("RANK", "0")) == 0:
        _announced.add(line)
        print(line, file=sys.stderr, flush=True)


def _batches(items: Iterable[dict], batch_size: int, skipped: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Crops of consecutive pictures regrouped into batches of ``batch_size`` persons; the messages of
    pictures that could not be read go to ``skipped``."""
    pending: list[dict] = []
    size = 0
    for item in items:
        if "error" in item:
            skipped.append(item["error"])
            continue
        pending.append(item)
        size += len(item["index"])
        while size >= batch_size:
            merged = {k: torch.cat([p[k] for p in pending]) for k in _CROP_KEYS}
            yield {k: v[:batch_size] for k, v in merged.items()}
            size -= batch_size
            pending = [{k: v[batch_size:] for k, v in merged.items()}] if size else []
    if size:
        yield {k: torch.cat([p[k] for p in pending]) for k in _CROP_KEYS}

