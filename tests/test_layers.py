"""The packages' doors point one way: zoo (ground floor) <- runtime <- trainer <- export. The torch-free zoo and
runtime reach the torch side only through entry points (`zoo export`, sampling backends), never by import."""

import ast
import subprocess
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from runtime.cli import main as runtime_cli
from runtime.sampler import Sampler, load_backend
from zoo.entry import Entry
from zoo.errors import UserError
from zoo.files import sha256_file

ROOT = Path(__file__).parents[1]
FLOORS = {"zoo": 0, "runtime": 1, "trainer": 2, "export": 3}


def _imports(path: Path):
    """Every module an import statement in the file names (function-level imports included), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def test_no_import_points_up():
    wrong = []
    for package, floor in FLOORS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module, line in _imports(path):
                top = module.split(".")[0]
                if FLOORS.get(top, -1) > floor:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_every_package_declares_what_it_exports():
    import importlib

    for package in FLOORS:
        module = importlib.import_module(package)
        assert "__all__" in vars(module), package
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, (package, missing)


def test_importing_the_runtime_and_the_zoo_loads_no_torch_trainer_or_exporter():
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts) for package in ("runtime", "zoo")
               for p in sorted((ROOT / package).rglob("*.py")) if p.name != "__main__.py"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer', 'export'})\n"
            "sys.exit(', '.join(loaded) or None)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_torch_backend_draws_the_same_samples_as_onnxruntime(entry):
    """Backends registered by the exporter follow the runtime's latent scheme: sample i is sample i."""
    torch_sampler = load_backend("torch")(Entry.load(entry))
    assert torch_sampler.backend == "torch" and torch_sampler.describe()["latent_scheme"] == "chunked-v1"
    ref_images, ref_masks = Sampler(Entry.load(entry), device="cpu").sample(indices=np.arange(5, 12), seed=3)
    images, masks = torch_sampler.sample(indices=np.arange(5, 12), seed=3)
    assert np.abs(images.astype(int) - ref_images).max() <= 1
    assert (masks == ref_masks).mean() >= 0.999


def test_unknown_or_unavailable_backends_are_one_line_errors(entry, monkeypatch):
    with pytest.raises(UserError, match="no sampling backend 'nope'"):
        load_backend("nope")
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # as on a machine without TensorRT
    res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--out", "x", "--count", "1", "--backend",
                                           "tensorrt", "-q"])
    assert res.exit_code == 1 and "TensorRT is not installed" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def test_the_torch_backend_in_bf16_on_the_cpu(entry, tmp_path):
    """bf16 (AVX-512 bf16 makes it faster than onnxruntime fp32 here): close to fp32, and like every backend
    independent of the batch a sample comes in (fixed runs, the last padded)."""
    ref_images, ref_masks = Sampler(Entry.load(entry)).sample(indices=np.arange(10), seed=1)
    bf16 = Sampler.from_pretrained(entry, backend="torch", precision="bf16", device="cpu")
    images, masks = bf16.sample(indices=np.arange(10), seed=1, batch_size=10)
    assert np.abs(images.astype(int) - ref_images).mean() < 3 and (masks == ref_masks).mean() > 0.95
    for batch in (1, 3):
        again, again_masks = bf16.sample(indices=np.arange(10), seed=1, batch_size=batch)
        assert np.array_equal(again, images) and np.array_equal(again_masks, masks)
    res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--out", str(tmp_path / "o"), "--count", "3",
                                           "--backend", "torch", "--precision", "bf16", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert (info["backend"], info["precision"], info["device"]) == ("torch", "bf16", "cpu")
    assert info["model_sha256"] == sha256_file(entry / "model.safetensors")


@pytest.mark.parametrize("args,message", [
    (["--precision", "fp16", "--device", "cpu"], "fp16 on the CPU"),
    (["--precision", "int8", "--device", "cpu"], "runs fp32, bf16, fp16, not int8"),
    (["--precision", "bf16", "--backend", "onnxruntime"], "no bf16 model in this entry")])
def test_torch_backend_requests_it_cannot_run_are_one_line(entry, tmp_path, args, message):
    argv = ["sample", str(entry), "--out", str(tmp_path / "o"), "--count", "1", "-q", *args]
    res = CliRunner().invoke(runtime_cli, argv + ([] if "--backend" in args else ["--backend", "torch"]))
    assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output


def test_the_torch_backend_on_cuda(entry):
    """CUDA graphs replay what eager computes, fp32 on the GPU stays within a grey level of onnxruntime on the
    CPU (TF32 off), and samples do not depend on the batch they come in."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none on this machine); bench/gpu.py measures the same path")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    ref_images, ref_masks = Sampler(Entry.load(entry), device="cpu").sample(indices=np.arange(40), seed=2)
    graphs = Sampler.from_pretrained(entry, backend="torch", device="cuda")
    eager = Sampler.from_pretrained(entry, backend="torch", device="cuda", cuda_graphs=False)
    images, masks = graphs.sample(indices=np.arange(40), seed=2, batch_size=40)
    assert np.abs(images.astype(int) - ref_images).max() <= 1 and (masks == ref_masks).mean() >= 0.999
    for sampler, batch in ((graphs, 7), (eager, 40)):
        again, again_masks = sampler.sample(indices=np.arange(40), seed=2, batch_size=batch)
        assert np.array_equal(again, images) and np.array_equal(again_masks, masks)
    for precision in ("bf16", "fp16"):
        low, low_masks = Sampler.from_pretrained(entry, backend="torch", device="cuda", precision=precision).sample(
            indices=np.arange(40), seed=2)
        assert np.abs(low.astype(int) - ref_images).mean() < 3 and (low_masks == ref_masks).mean() > 0.95
