"""``okspose model-info``: what a config's network is, its parameters and its GFLOPs per person."""

from __future__ import annotations

import argparse

from torch import nn

from okspose.models.build import build_model
from okspose.models.complexity import measure_complexity
from okspose.run_config import load_run_config


def run(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config, args.overrides)
    w, h = cfg.data.input_size
    m = cfg.model
    net = build_model(cfg).eval()
    c = measure_complexity(net, (1, 3, h, w))
    joints, out_h, out_w = c.output_shape[1:]
    if m.name == "backbone":
        layers = len([x for x in net.deconv if isinstance(x, nn.ConvTranspose2d)])
        print(f"{m.backbone} backbone + {layers} deconvolution(s) of {m.num_features} filters (SimpleBaseline), "
              f"pretrained: {m.pretrained or 'no'}, input {w}x{h} -> heatmaps {out_w}x{out_h} ({joints} joints)")
    else:
        kind = f"BlockQNN block [{m.block_code}] in the hourglass" if m.name == "blockqnn" else "Stacked Hourglass"
        print(f"{kind}: {m.num_stacks} stack(s), {m.num_features} features, depth {m.depth}, "
              f"{m.modules_per_position} module(s) per position, input {w}x{h} -> heatmaps {out_w}x{out_h} "
              f"({joints} joints)")
    print(f"parameters: {c.params / 1e6:.2f} M")
    print(f"per person: {c.macs / 1e9:.2f} GMACs ({c.flops / 1e9:.2f} GFLOPs)")
    return 0
