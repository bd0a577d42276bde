"""ONNX export with the dynamo exporter: dynamic batch and latent grid, one self-contained file, checked
(full checker, strict shape inference) and compared with PyTorch before it is accepted."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from runtime.latents import latent_grid
from trainer.generator import Generator, to_uint8
from zoo.files import atomic_write
from zoo.sessions import open_session

from .graph import ExportError, SamplerGraph, fold_spectral_norm, output_names

OPSET = 18
MAX_BATCH = 4096
INFERENCE_GRID_MIN = 2  # cells per side at inference (training grids have 3..7); ONNX export needs symbolic sizes >= 2
INFERENCE_GRID_FACTOR = 8  # grids up to 8x the trained grid per side
PARITY_BATCHES = (1, 2, 7)
MAX_PIXEL_DELTA = 1
MIN_MASK_AGREEMENT = 0.999


def grid_bounds(G: Generator) -> dict[str, list[int]]:
    cfg = G.cfg
    return {"min": [INFERENCE_GRID_MIN, INFERENCE_GRID_MIN],
            "max": [INFERENCE_GRID_FACTOR * cfg.grid_h, INFERENCE_GRID_FACTOR * cfg.grid_w]}


def parity_grids(G: Generator) -> list[tuple[int, int]]:
    """The trained grid, a taller and a wider one."""
    h, w = G.cfg.grid_h, G.cfg.grid_w
    return [(h, w), (h + 1, max(INFERENCE_GRID_MIN, w - 1)), (max(INFERENCE_GRID_MIN, h - 1), 2 * w)]


def to_onnx_bytes(G: Generator, probabilities: bool = False, half: bool = False, *,
                  upsampling: str = "phases") -> bytes:
    """Export the EMA generator (SN folded, eval mode, only the final RGB and mask heads) to ONNX bytes.
    half: the fp16 variant for GPUs (float32 latent in, uint8 out); upsampling: see export.graph.UPSAMPLING."""
    graph = SamplerGraph(fold_spectral_norm(G, upsampling=upsampling), probabilities,
                         torch.float16 if half else torch.float32).eval()
    cfg = G.cfg
    bounds = grid_bounds(G)
    example = torch.randn(2, cfg.noise_dim, cfg.grid_h + 1, cfg.grid_w + 1)
    dims = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH),
            2: torch.export.Dim("grid_h", min=bounds["min"][0], max=bounds["max"][0]),
            3: torch.export.Dim("grid_w", min=bounds["min"][1], max=bounds["max"][1])}
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=OPSET, input_names=["z"],
                                    output_names=output_names(cfg, probabilities), dynamic_shapes={"z": dims},
                                    external_data=False, verbose=False)
    model = program.model_proto
    model.doc_string = "oneshot-gan sampler: z (B, noise_dim, gh, gw) -> image uint8 NHWC, mask uint8"
    return model.SerializeToString()


class _quiet_exporter:
    """The dynamo exporter logs progress lines at INFO/WARNING; keep the user's terminal clean."""

    def __enter__(self):
        self.loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


def check_model(data: bytes, where: str) -> onnx.ModelProto:
    """Full checker and strict shape inference; ExportError naming the file otherwise."""
    model = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{where}: ONNX check failed ({str(e).splitlines()[0]})") from None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ExportError(f"{where}: model has external data; expected one self-contained file")
    return model


def cpu_session(data: bytes | str):
    return open_session(data)


@dataclass
class Agreement:
    max_pixel_delta: int
    mean_pixel_delta: float
    mask_agreement: float  # 1.0 without masks

    def as_dict(self) -> dict:
        return {"max_pixel_delta": self.max_pixel_delta, "mean_pixel_delta": round(self.mean_pixel_delta, 5),
                "mask_agreement": round(self.mask_agreement, 6)}


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> Agreement:
    d = np.abs(ref[0].astype(np.int16) - got[0].astype(np.int16))
    agree = float((ref[1] == got[1]).mean()) if len(ref) > 1 else 1.0
    return Agreement(int(d.max()), float(d.mean()), agree)


@torch.no_grad()
def torch_outputs(G: Generator, z: np.ndarray) -> list[np.ndarray]:
    """The PyTorch model (spectral-norm hooks in eval mode, not folded) through the same post-processing."""
    out = G.eval().synthesize(G.grid_features(torch.from_numpy(z)), n_rgb=1)
    return [t.numpy() for t in to_uint8(out.images[-1], out.mask_logits) if t is not None]


def latents(rng: np.random.Generator, batch: int, noise_dim: int, grid: tuple[int, int]) -> np.ndarray:
    """Random latents for checks and calibration, broadcast over the grid as the runtime does (its own latents
    come from its seeded scheme, runtime.latents)."""
    return latent_grid(rng.standard_normal((batch, noise_dim), dtype=np.float32), grid)


def parity(G: Generator, data: bytes, where: str, seed: int = 0) -> dict:
    """Run the ONNX and the PyTorch model on the same random latents over grids x batches {1, 2, 7}."""
    sess = cpu_session(data)
    rng = np.random.default_rng(seed)
    report = []
    for grid in parity_grids(G):
        for batch in PARITY_BATCHES:
            z = latents(rng, batch, G.cfg.noise_dim, grid)
            a = compare(torch_outputs(G, z), sess.run(None, {"z": z}))
            report.append({"grid": list(grid), "batch": batch, **a.as_dict()})
    return accept_parity(report, where)


def accept_parity(report: list[dict], where: str) -> dict:
    """The worst of the parity checks, or ExportError when it is outside the tolerances."""
    worst = Agreement(max(c["max_pixel_delta"] for c in report), max(c["mean_pixel_delta"] for c in report),
                      min(c["mask_agreement"] for c in report))
    if worst.max_pixel_delta > MAX_PIXEL_DELTA or worst.mask_agreement < MIN_MASK_AGREEMENT:
        raise ExportError(f"{where}: ONNX output differs from PyTorch (max |delta| {worst.max_pixel_delta}, "
                          f"mask agreement {worst.mask_agreement:.4%}); refusing to write it")
    return {"checks": report, "worst": worst.as_dict()}


def export_onnx(G: Generator, path: Path, probabilities: bool = False, where: str | None = None) -> dict:
    """Export, check and verify; the file is written (atomically) only when every check passes.
    where: the name errors give (the final path when `path` is in a staging folder)."""
    where = where or str(path)
    data = to_onnx_bytes(G, probabilities)
    check_model(data, where)
    report = parity(G, data, where)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), data)
    return report
