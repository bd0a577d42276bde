"""The int8 variant of an exported fp32 ONNX (static QDQ, for CPUs), and variant quality measurement.

Variants keep the fp32 graph's interface (float32 latent in, uint8 out). Each variant's quality against the fp32
ONNX (mean |delta| of image pixels, mask agreement) is measured on held-out latents and recorded. Latents come
from a Feed: (rng, batch) -> the model's input dict (grid_feed for one-shot graphs; SinGAN graphs take one noise
map per scale, export.singan_onnx.maps_feed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from .graph import ExportError
from .onnx_export import Agreement, compare, cpu_session, latents

CALIBRATION_SAMPLES = 64
EVAL_SAMPLES = 32
MIN_INT8_MASK_AGREEMENT = 0.97
Feed = Callable[[np.random.Generator, int], dict]


def grid_feed(noise_dim: int, grid: tuple[int, int]) -> Feed:
    return lambda rng, batch: {"z": latents(rng, batch, noise_dim, grid)}


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol: random latents, the GAN's own input distribution."""

    def __init__(self, feed: Feed, samples: int, batch: int = 8, seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.batches = [feed(rng, batch) for _ in range(samples // batch)]

    def get_next(self):
        return self.batches.pop() if self.batches else None


HEAD_OPS = {"Tanh", "ArgMax", "Softmax", "ArgMin"}
# Data movement after a conv (the phases-nhwc upsampling, export.graph.UPSAMPLING) is quantized with the convs:
# onnxruntime then moves uint8 instead of float there (192x320 reference widths: 58.4 -> 69.2 samples/s).
MOVES = {"Slice", "Concat", "Transpose", "Reshape"}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _head_convs(model: onnx.ModelProto) -> list[str]:
    """The final RGB and mask convolution(s): kept in float so colours and class boundaries stay exact. One-shot
    graphs have one conv for both (export.graph.merged_heads, sliced before Tanh / ArgMax), SinGAN graphs a
    Tanh after the last conv."""
    consumers = _consumers(model)

    def feeds_a_head(name: str) -> bool:
        return any(c.op_type in HEAD_OPS or (c.op_type in ("Slice", "Split") and any(map(feeds_a_head, c.output)))
                   for c in consumers.get(name, []))

    return [n.name for n in model.graph.node if n.op_type == "Conv" and feeds_a_head(n.output[0])]


def _quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Every conv but the heads, and the data movement that follows one (not the latent's reshapes, which come
    from the first layer's MatMul, nor the slices of the float heads)."""
    consumers, heads = _consumers(model), set(_head_convs(model))
    chosen = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in heads]
    todo = [n for n in model.graph.node if n.name in chosen]
    while todo:
        for c in consumers.get(todo.pop().output[0], []):
            if c.op_type in MOVES and c.name not in chosen:
                chosen.append(c.name)
                todo.append(c)
    return chosen


def quantize_int8(fp32: bytes, feed: Feed, where: str) -> bytes:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        # reduce_range (7-bit weights): x86 CPUs without VNNI multiply u8 x s8 pairs into saturating int16
        # (onnxruntime's documented U8S8 limitation); an entry runs on any CPU, and on such a 2-core AVX2 machine
        # full-range weights gave 96.4 % mask agreement where reduced ones gave 97.8 % (tests/test_export.py model)
        quantize_static(str(pre), str(out), _Calibration(feed, CALIBRATION_SAMPLES),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", *MOVES], nodes_to_quantize=_quantized_nodes(model))
        return out.read_bytes()


def measure(fp32: bytes, variant: bytes, feed: Feed, *, seed: int = 99) -> Agreement:
    """Quality of a variant against the fp32 ONNX on held-out latents at the trained size (CPU)."""
    inputs = feed(np.random.default_rng(seed), EVAL_SAMPLES)
    return compare(cpu_session(fp32).run(None, inputs), cpu_session(variant).run(None, inputs))


def int8_variant(fp32: bytes, feed: Feed, where: str, *, has_masks: bool,
                 reference: bytes | None = None) -> tuple[bytes, dict]:
    """Quantize the fp32 graph `fp32`; quality is measured against `reference` (the fp32 ONNX the entry ships,
    when it is another graph of the same function) or `fp32` itself."""
    data = quantize_int8(fp32, feed, where)
    q = measure(reference or fp32, data, feed)
    if has_masks and q.mask_agreement < MIN_INT8_MASK_AGREEMENT:
        raise ExportError(f"{where}: int8 mask agreement {q.mask_agreement:.2%} is below "
                          f"{MIN_INT8_MASK_AGREEMENT:.0%}; refusing to write it (use fp32 on this scene)")
    return data, q.as_dict()
