"""TensorRT engines built from an entry's ONNX, cached per machine, and a runner for them.

TensorRT is imported lazily (optional, GPU only). Version branches:
- TensorRT 10: weakly typed networks; fp16 = the fp32 ONNX plus `BuilderFlag.FP16`.
- TensorRT 11+: strongly typed only (the precision flags are gone); fp16 = the fp16 ONNX
  (`onnx/generator.fp16.onnx`, fp16 arithmetic inside, float32 latent in, uint8 out).
Engines are valid for one TensorRT version and GPU architecture only: they are cached under the user's cache
dir keyed by (ONNX sha256, TensorRT version, compute capability, profile, precision) and never published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo.entry_config import ONNX_FILES, EntryConfig
from zoo.files import atomic_write

from .graph import ExportError

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE = 2 << 30
DEFAULT_MAX_BATCH = 64
DEFAULT_OPT_BATCH = 16


@dataclass(frozen=True)
class Profile:
    """Optimization profile over (batch, grid_h, grid_w) of the latent input z (B, noise_dim, gh, gw)."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def shapes(self, noise_dim: int) -> tuple[tuple[int, ...], ...]:
        return tuple((b, noise_dim, h, w) for b, h, w in (self.min, self.opt, self.max))

    def validate(self, grid_bounds: tuple[tuple[int, int], tuple[int, int]]) -> "Profile":
        """Check the profile against the model's (min, max) latent grids, each (h, w)."""
        for i, name in enumerate(("batch", "grid_h", "grid_w")):
            lo, mid, hi = self.min[i], self.opt[i], self.max[i]
            if not 1 <= lo <= mid <= hi:
                raise ExportError(f"profile {name}: need 1 <= min <= opt <= max, got {lo}, {mid}, {hi}")
        for i, name in ((1, "grid_h"), (2, "grid_w")):
            b_lo, b_hi = grid_bounds[0][i - 1], grid_bounds[1][i - 1]
            if self.min[i] < b_lo or self.max[i] > b_hi:
                raise ExportError(f"profile {name} {self.min[i]}..{self.max[i]} is outside the model's grid "
                                  f"bounds {b_lo}..{b_hi}")
        return self


def default_profile(trained_grid: tuple[int, int], max_batch: int = DEFAULT_MAX_BATCH,
                    grid: tuple[int, int] | None = None) -> Profile:
    """Batches 1..max_batch (optimised for min(16, max_batch)) at one grid (the trained one by default)."""
    h, w = grid or trained_grid
    return Profile(min=(1, h, w), opt=(min(DEFAULT_OPT_BATCH, max_batch), h, w), max=(max_batch, h, w))


def cache_dir() -> Path:
    root = os.environ.get("ONESHOT_GAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "oneshot-gan")
    return Path(root) / "tensorrt"


def cache_key(onnx_sha256: str, trt_version: str, compute_capability: tuple[int, int], profile: Profile,
              precision: str) -> str:
    blob = json.dumps({"onnx": onnx_sha256, "trt": trt_version, "sm": list(compute_capability),
                       "profile": asdict(profile), "precision": precision}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("TensorRT is not installed (pip install 'oneshot-gan[tensorrt]' on a machine with an "
                          "NVIDIA GPU)") from None
    return trt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def gpu_compute_capability() -> tuple[int, int]:
    """The current GPU's compute capability, or a one-line ExportError when there is no usable GPU."""
    try:
        import torch
    except ImportError:
        raise ExportError("TensorRT engines need torch with CUDA to find the GPU (pip install torch)") from None
    if not torch.cuda.is_available():
        raise ExportError("no CUDA GPU is available: TensorRT engines can only be built and run on a GPU")
    return torch.cuda.get_device_capability()


def onnx_for_precision(entry: Path, precision: str, major: int) -> Path:
    """TensorRT 11 builds fp16 only from the fp16 ONNX; TensorRT 10 builds it from the fp32 one with a flag."""
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"TensorRT precision must be fp32 or fp16, got {precision}")
    name = ONNX_FILES["fp16" if (precision == "fp16" and major >= 11) else "fp32"]
    path = Path(entry) / name
    if not path.is_file():
        raise ExportError(f"{path}: missing (TensorRT {major} needs it for {precision}; "
                          f"re-export with --precision {precision})")
    return path


def build_engine(onnx_path: Path, profile: Profile, noise_dim: int, *, precision: str = "fp32",
                 workspace: int = DEFAULT_WORKSPACE, timing_cache: Path | None = None, trt=None) -> bytes:
    """Parse the ONNX and build a serialized engine with one optimization profile."""
    trt = trt or import_tensorrt()
    major = trt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch; TensorRT 11 networks are always strongly typed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision == "fp16" and major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape("z", *profile.shapes(noise_dim))
    config.add_optimization_profile(opt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"{onnx_path}: TensorRT failed to build an engine (see the messages above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(engine)


def cached_engine(entry: Path, profile: Profile, precision: str = "fp32", *, workspace: int = DEFAULT_WORKSPACE,
                  trt=None, compute_capability: tuple[int, int] | None = None) -> Path:
    """The engine for an entry folder, built on first use and cached."""
    trt = trt or import_tensorrt()
    sm = compute_capability or gpu_compute_capability()
    config = EntryConfig.read(Path(entry) / "config.json")
    profile.validate((config.grid_min, config.grid_max))
    onnx_path = onnx_for_precision(entry, precision, trt_major(trt))
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    key = cache_key(sha, str(trt.__version__), sm, profile, precision)
    path = cache_dir() / f"{key}.engine"
    if not path.is_file():
        logger.info(f"building a TensorRT {trt.__version__} engine for sm_{sm[0]}{sm[1]} (once; cached in {path.parent})")
        data = build_engine(onnx_path, profile, config.noise_dim, precision=precision, workspace=workspace,
                            timing_cache=cache_dir() / f"timing-{trt.__version__}-sm{sm[0]}{sm[1]}.cache", trt=trt)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    return path


class EngineRunner:
    """Runs an engine with execute_async_v3 on torch CUDA tensors (uint8 image NHWC and mask outputs)."""

    def __init__(self, engine_path: Path, trt=None):
        import torch

        self.torch = torch
        self.trt = trt or import_tensorrt()
        runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ExportError(f"{engine_path}: cannot deserialize (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.outputs = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)
                        if self.engine.get_tensor_mode(self.engine.get_tensor_name(i)) == self.trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()

    def _torch_dtype(self, name: str):
        t = self.engine.get_tensor_dtype(name)
        mapping = {self.trt.DataType.UINT8: self.torch.uint8, self.trt.DataType.FLOAT: self.torch.float32,
                   self.trt.DataType.HALF: self.torch.float16, self.trt.DataType.INT32: self.torch.int32}
        return mapping[t]

    def __call__(self, z) -> dict:
        """z: float32 CUDA tensor (B, noise_dim, gh, gw). Returns CUDA tensors by output name."""
        torch = self.torch
        z = z.to(device="cuda", dtype=torch.float32).contiguous()
        self.context.set_input_shape("z", tuple(z.shape))
        self.context.set_tensor_address("z", z.data_ptr())
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, out[name].data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return out
