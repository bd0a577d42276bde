"""The packages' doors point one way: zoo (ground floor) <- runtime <- trainer <- export. The torch-free zoo and
runtime reach the torch side only through entry points (`zoo export`, sampling backends), never by import."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from runtime.cli import main as runtime_cli
from runtime.sampler import Sampler, load_backend
from zoo.entry import Entry
from zoo.errors import UserError

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
