"""ONNX export of a SinGAN pyramid (trainer/singan.py): one input per scale, z0 (coarsest) .. zK, each
(B, C, H_n, W_n) unit-variance float32 noise with dynamic batch and size (the maps' sizes define the output's,
runtime.latents.map_sizes), and the outputs of every entry: image (B, H, W, 3) uint8 and, with masks,
mask (B, H, W) uint8 class ids. BatchNorm runs with its running statistics (eval mode); the noise amplitudes
are constants of the graph. Parity with PyTorch is checked over several output sizes and batch sizes."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from runtime.latents import map_sizes
from trainer.singan import SinGAN, uint8_outputs

from .onnx_export import MAX_BATCH, OPSET, _quiet_exporter, accept_parity, compare, cpu_session

MIN_SIDE = 4   # px of a noise map at the export's symbolic sizes (a 3x3 conv pads by one)


class SinGANGraph(nn.Module):
    """dtype: weights and arithmetic inside (fp16 for GPUs); the noise maps come in as float32 and the uint8
    conversion runs in float32."""

    def __init__(self, model: SinGAN, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False).to(dtype)
        self.num_classes, self.dtype = model.cfg.num_classes, dtype

    def forward(self, *noises: torch.Tensor):
        x = self.model([z.to(self.dtype) for z in noises]).float()
        image, mask = uint8_outputs(x, self.num_classes)
        return (image,) if mask is None else (image, mask)


def maps_feed(cfg):
    """Random unit-variance noise maps at the trained sizes (export.quantize's Feed) for calibration and checks."""
    return lambda rng, batch: {f"z{n}": rng.standard_normal((batch, cfg.channels, h, w), dtype=np.float32)
                               for n, (h, w) in enumerate(cfg.sizes)}


def input_names(model: SinGAN) -> list[str]:
    return [f"z{n}" for n in range(len(model.cfg.sizes))]


def to_onnx_bytes(model: SinGAN, half: bool = False) -> bytes:
    """half: the fp16 variant for GPUs (float32 noise in, uint8 out)."""
    cfg = model.cfg
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    examples = tuple(torch.randn(2, cfg.channels, h + 1, w + 1) for h, w in cfg.sizes)
    dims = tuple({0: batch, 2: torch.export.Dim(f"h{n}", min=MIN_SIDE, max=8 * h),
                  3: torch.export.Dim(f"w{n}", min=MIN_SIDE, max=8 * w)} for n, (h, w) in enumerate(cfg.sizes))
    outputs = ["image", "mask"] if cfg.has_masks else ["image"]
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        graph = SinGANGraph(model, torch.float16 if half else torch.float32)
        program = torch.onnx.export(graph, examples, dynamo=True, opset_version=OPSET,
                                    input_names=input_names(model), output_names=outputs, dynamic_shapes=(dims,),
                                    external_data=False, verbose=False)
    proto = program.model_proto
    proto.doc_string = "oneshot-gan SinGAN sampler: z0 .. zK (B, C, H_n, W_n) -> image uint8 NHWC, mask uint8"
    return proto.SerializeToString()


def parity(model: SinGAN, data: bytes, where: str, sizes: list[tuple[int, int]], batches=(1, 3),
           seed: int = 0) -> dict:
    """ONNX against PyTorch on the same noise, for each output size and batch size."""
    sess, graph = cpu_session(data), SinGANGraph(model)
    rng = np.random.default_rng(seed)
    trained = [tuple(s) for s in model.cfg.sizes]
    report = []
    for size in sizes:
        for batch in batches:
            maps = [rng.standard_normal((batch, model.cfg.channels, h, w), dtype=np.float32)
                    for h, w in map_sizes(trained, size)]
            with torch.no_grad():
                ref = [t.numpy() for t in graph(*map(torch.from_numpy, maps))]
            got = sess.run(None, dict(zip(input_names(model), maps)))
            report.append({"size": list(size), "batch": batch, **compare(ref, got).as_dict()})
    return accept_parity(report, where)
