"""Write an entry folder of a freshly initialised generator (reference widths) for speed benchmarks only.

    .venv/bin/python bench/make_bench_entry.py OUT [--size 192x320] [--classes 3]
Throughput does not depend on the weights. An untrained mask head is near a tie everywhere, so the int8
quality gate (97 % mask agreement) is lifted here; the recorded quality numbers of this entry mean nothing.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from export import quantize  # noqa: E402
from export.writer import write_entry  # noqa: E402
from trainer.config import auto_config  # noqa: E402
from trainer.data import default_palette  # noqa: E402
from trainer.generator import Generator, refresh_spectral_norms  # noqa: E402
from zoo.errors import log_to_stderr  # noqa: E402
from zoo.sizes import parse_hw  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="192x320")
    ap.add_argument("--classes", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    G = Generator(auto_config(*parse_hw(a.size), num_classes=a.classes)).eval()
    refresh_spectral_norms(G)
    quantize.MIN_INT8_MASK_AGREEMENT = 0.0
    classes = {"names": ["background"] + [f"class_{i}" for i in range(1, a.classes)],
               "palette": default_palette(a.classes).tolist()}
    log_to_stderr(quiet=False)
    write_entry(G, a.out, classes, {"iterations": 0, "note": "untrained, for benchmarks"}, precisions=("fp32", "int8"))


if __name__ == "__main__":
    main()
