"""bench/gpu.py runs where a GPU is lent for minutes only: its code paths must already work, here on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_gpu_check_runs_its_code_paths_on_the_cpu(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench/gpu.py"), "--device", "cpu", "--quick",
                          "--out", str(tmp_path / "gpu.json")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    table = json.loads((tmp_path / "gpu.json").read_text())
    assert float(table["training s/it, bf16"]) > 0 and table["TensorRT"].startswith("not installed")
    assert "samples/s" in table["torch backend bf16, runs of 4"]
    assert sum("samples/s" in v for k, v in table.items() if k.startswith("runtime sample --format")) == 2
