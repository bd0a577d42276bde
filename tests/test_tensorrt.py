"""TensorRT pieces without a GPU: profile arithmetic, cache keys, the TensorRT 10 / 11 branches against a fake
module, and the ONNX running in onnxruntime at the shapes a profile allows. The real build runs where a GPU is."""

import types

import numpy as np
import pytest

from export import tensorrt as ert
from export.graph import ExportError
from export.onnx_export import cpu_session, latents
from zoo.entry import Entry


def test_default_profile_and_validation():
    p = ert.default_profile((3, 5), max_batch=32)
    assert p.min == (1, 3, 5) and p.opt == (16, 3, 5) and p.max == (32, 3, 5)
    assert p.shapes(64) == ((1, 64, 3, 5), (16, 64, 3, 5), (32, 64, 3, 5))
    bounds = ((2, 2), (24, 40))
    assert p.validate(bounds) is p
    with pytest.raises(ExportError, match="min <= opt <= max"):
        ert.Profile((4, 3, 5), (2, 3, 5), (8, 3, 5)).validate(bounds)
    with pytest.raises(ExportError, match="outside the model's grid bounds"):
        ert.Profile((1, 3, 5), (1, 3, 5), (1, 3, 41)).validate(bounds)


def test_cache_key_changes_with_every_component():
    p = ert.default_profile((3, 5))
    base = ert.cache_key("a" * 64, "10.9.0", (9, 0), p, "fp16")
    variants = [ert.cache_key("b" * 64, "10.9.0", (9, 0), p, "fp16"),
                ert.cache_key("a" * 64, "11.1.0", (9, 0), p, "fp16"),
                ert.cache_key("a" * 64, "10.9.0", (8, 9), p, "fp16"),
                ert.cache_key("a" * 64, "10.9.0", (9, 0), ert.default_profile((3, 5), max_batch=8), "fp16"),
                ert.cache_key("a" * 64, "10.9.0", (9, 0), p, "fp32")]
    assert len({base, *variants}) == 6
    assert base == ert.cache_key("a" * 64, "10.9.0", (9, 0), p, "fp16")


class FakeTRT:
    """Records what the builder is asked; mimics TensorRT 10 (FP16 flag) or 11 (no precision flags)."""

    def __init__(self, version):
        self.__version__ = version
        self.calls = []
        fake = self

        class Flag:
            pass

        if version.startswith("10."):
            Flag.FP16 = "FP16"
        self.BuilderFlag = Flag
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

        class Logger:
            WARNING = 2

            def __init__(self, level):
                pass

        self.Logger = Logger

        class Cache:
            def serialize(self):
                return b"timing"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", size))

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, p):
                fake.calls.append(("profile", p.shape))

            def create_timing_cache(self, data):
                fake.calls.append(("timing_cache_in", data))
                return Cache()

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return Cache()

        class OptProfile:
            def set_shape(self, name, mn, opt, mx):
                self.shape = (name, mn, opt, mx)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return OptProfile()

            def build_serialized_network(self, network, config):
                return b"engine-bytes"

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls.append(("parse", path))
                return True

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.mark.parametrize("version,expect_flag,onnx_name", [("10.13.0", True, "generator.onnx"),
                                                           ("11.4.0", False, "generator.fp16.onnx")])
def test_version_branches_for_fp16(entry, tmp_path, monkeypatch, version, expect_flag, onnx_name):
    monkeypatch.setenv("ONESHOT_GAN_CACHE", str(tmp_path / "cache"))
    trt = FakeTRT(version)
    profile = ert.default_profile((3, 5), max_batch=8)
    path = ert.cached_engine(entry, profile, "fp16", trt=trt, compute_capability=(9, 0))
    assert path.read_bytes() == b"engine-bytes" and path.parent == tmp_path / "cache" / "tensorrt"
    parsed = [c[1] for c in trt.calls if c[0] == "parse"]
    assert parsed[0].endswith("onnx/" + onnx_name)
    assert (("flag", "FP16") in trt.calls) == expect_flag
    assert ("profile", ("z", (1, 64, 3, 5), (8, 64, 3, 5), (8, 64, 3, 5))) in trt.calls
    assert ("workspace", ert.DEFAULT_WORKSPACE) in trt.calls
    assert (path.parent / f"timing-{version}-sm90.cache").read_bytes() == b"timing"
    # second call: cached, no new build
    trt.calls.clear()
    assert ert.cached_engine(entry, profile, "fp16", trt=trt, compute_capability=(9, 0)) == path
    assert not any(c[0] == "parse" for c in trt.calls)


def test_tensorrt_11_needs_the_fp16_onnx(entry, tmp_path):
    bare = tmp_path / "bare"
    (bare / "onnx").mkdir(parents=True)
    (bare / "onnx/generator.onnx").write_bytes((entry / "onnx/generator.onnx").read_bytes())
    with pytest.raises(ExportError, match="re-export with --precision fp16"):
        ert.onnx_for_precision(bare, "fp16", 11)
    assert ert.onnx_for_precision(bare, "fp16", 10).name == "generator.onnx"


def test_profile_shapes_run_in_onnxruntime(entry):
    profile = ert.Profile(min=(1, 2, 2), opt=(4, 3, 5), max=(9, 6, 10)).validate(Entry.load(entry).grid_bounds)
    sess = cpu_session(str(entry / "onnx/generator.onnx"))
    rng = np.random.default_rng(0)
    for b, h, w in (profile.min, profile.opt, profile.max):
        image, mask = sess.run(None, {"z": latents(rng, b, 64, (h, w))})
        assert image.shape == (b, 8 * h, 8 * w, 3) and mask.shape == (b, 8 * h, 8 * w)


def test_missing_tensorrt_or_gpu_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_trt(name, *a, **k):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_trt)
    with pytest.raises(ExportError, match="TensorRT is not installed"):
        ert.import_tensorrt()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ExportError, match="no CUDA GPU"):
            ert.gpu_compute_capability()


def _gpu_and_trt():
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _gpu_and_trt(), reason="needs TensorRT and an NVIDIA GPU (not present on CPU machines)")
def test_engine_matches_onnxruntime_on_gpu(entry, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("ONESHOT_GAN_CACHE", str(tmp_path / "cache"))
    path = ert.cached_engine(entry, ert.default_profile((3, 5), max_batch=8), "fp32")
    runner = ert.EngineRunner(path)
    z = latents(np.random.default_rng(0), 8, 64, (3, 5))
    got = runner(torch.from_numpy(z).cuda())
    ref = cpu_session(str(entry / "onnx/generator.onnx")).run(None, {"z": z})
    assert np.abs(got["image"].cpu().numpy().astype(int) - ref[0]).max() <= 2
    assert (got["mask"].cpu().numpy() == ref[1]).mean() > 0.995
