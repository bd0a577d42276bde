"""`runtime sample --ray` (a local Ray instance) against the local `runtime sample`, the same job, one run each.

    .venv/bin/python bench/ray_sample.py ENTRY [--count 2000] [--format webdataset]

Prints samples/s of both, their ratio, and the Ray path's fixed start-up cost (Ray, the actors, the first
samples), measured as the wall time of a 1-sample job.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIME = str(Path(sys.executable).with_name("runtime"))


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([RUNTIME, "sample", *args, "-q"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("entry")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--format", default="webdataset")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job = [a.entry, "--count", str(a.count), "--format", a.format]
        local = wall([*job, "--out", f"{tmp}/local"])
        startup = wall([a.entry, "--count", "1", "--out", f"{tmp}/one", "--ray"])
        ray = wall([*job, "--out", f"{tmp}/ray", "--ray"])
    print(f"local {a.count / local:.1f} samples/s, --ray {a.count / ray:.1f} samples/s (ratio {local / ray:.2f}), "
          f"--ray without its start-up {a.count / max(ray - startup, 1e-9):.1f} samples/s; start-up {startup:.1f} s")


if __name__ == "__main__":
    main()
