"""One-shot GAN against SinGAN on the same scene: train both, evaluate both, one side-by-side table.

    .venv/bin/python bench/compare_arch.py IMAGE [--mask MASK] [--classes FILE] --out DIR
        [--oneshot "trainer fit options"] [--singan "trainer fit options"] [--samples 100] [--unet-steps 500]
        [--jobs 2]

Each architecture trains with `trainer fit` in its own single-threaded process (--jobs at a time: the two side
by side on this 2-core machine), then `trainer eval` runs on its run folder with the same seed and sample count.
Choose the options so the two get about the same CPU time (the table prints each training's wall and CPU
minutes; CPU time is the fair measure when other work shares the machine): SinGAN's `--iters` counts
iterations per scale. samples/s: each run exported (fp32) and measured model-only with onnxruntime by
`runtime bench`, after the trainings (all cores). Writes DIR/table.txt and DIR/results.json; runs already in DIR
are evaluated again, not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.files import atomic_write  # noqa: E402  (after the path)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(arch: str, a, options: str) -> dict:
    run = a.out / arch
    if (run / "config.json").is_file() and (run / "train_s.json").is_file():
        return json.loads((run / "train_s.json").read_text())
    cmd = [sys.executable, "-m", "trainer.cli", "fit", str(a.image), "--out", str(run), "--overwrite", "--arch", arch,
           "--device", "cpu", "-q", *(["--mask", str(a.mask)] if a.mask else []),
           *(["--classes", str(a.classes)] if a.classes else []), *shlex.split(options)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)   # the child's own CPU time: fair under any load
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            last = (err.read().decode(errors="replace").strip().splitlines() or ["?"])[-1]
            raise SystemExit(f"{arch}: trainer fit failed: {last}")
    record = {"train_s": round(time.perf_counter() - t0, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "options": options}
    atomic_write(run / "train_s.json", json.dumps(record) + "\n")
    return record


def evaluate(arch: str, a) -> dict:
    cmd = [sys.executable, "-m", "trainer.cli", "eval", str(a.out / arch), "--json", "-q", "--samples",
           str(a.samples), "--unet-steps", str(a.unet_steps)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{arch}: trainer eval failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout)


def sampling_rate(arch: str, a) -> float:
    """Model-only samples/s of the exported fp32 entry with onnxruntime, as `runtime bench` measures it (all
    cores): what a user of the entry gets."""
    entry = a.out / f"{arch}-entry"
    scripts = Path(sys.executable).parent   # the console scripts of this environment
    subprocess.run([str(scripts / "zoo"), "export", str(a.out / arch), "--out", str(entry), "--overwrite",
                    "--precision", "fp32", "-q"], capture_output=True, text=True, check=True)
    proc = subprocess.run([str(scripts / "runtime"), "bench", str(entry), "--json"], capture_output=True,
                          text=True, check=True)
    return round(json.loads(proc.stdout)["results"]["fp32"]["samples_per_s"], 2)


def row(arch: str, record: dict, res: dict, rate: float) -> dict:
    out = {"arch": arch, "train_min": round(record["train_s"] / 60, 1),
           "cpu_min": round(record["cpu_s"] / 60, 1) if "cpu_s" in record else None, "options": record["options"],
           "diversity": res["diversity"]["pixel_diversity"], "ms_ssim": round(res["diversity"]["ms_ssim"]["mean"], 3),
           "near_copies": res["memorisation"]["near_copies"],
           "image_near_copies": res["memorisation"]["image_near_copies"],
           "quality_median": res["quality_score"]["median"], "samples_per_s": rate}
    if "mask_alignment" in res:
        out.update(miou=res["mask_alignment"]["miou"], tv=res["class_frequencies"]["total_variation"])
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'arch':8s} {'train min':>9s} {'CPU min':>7s} {'div':>5s} {'MS-SSIM':>7s} {'copies':>6s} {'img copies':>10s} "
            f"{'quality':>8s} {'mIoU':>5s} {'TV':>6s} {'samples/s':>9s}  options")
    lines = [head, "-" * len(head)]
    for r in rows:
        miou = f"{r['miou']:5.1f}" if "miou" in r else "    -"
        tv = f"{r['tv']:6.3f}" if "tv" in r else "     -"
        cpu = f"{r['cpu_min']:7.1f}" if r.get("cpu_min") is not None else "      -"
        lines.append(f"{r['arch']:8s} {r['train_min']:9.1f} {cpu} {r['diversity']:5.2f} {r['ms_ssim']:7.3f} "
                     f"{100 * r['near_copies']:5.0f}% {100 * r['image_near_copies']:9.0f}% {r['quality_median']:8.4f} "
                     f"{miou} {tv} {r['samples_per_s']:9.2f}  {r['options']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", type=Path)
    p.add_argument("--mask", type=Path)
    p.add_argument("--classes", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--oneshot", default="", help="trainer fit options of the one-shot GAN [its CPU recipe]")
    p.add_argument("--singan", default="", help="trainer fit options of SinGAN [the paper's]")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--unet-steps", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    archs = {"oneshot": a.oneshot, "singan": a.singan}
    with ThreadPoolExecutor(a.jobs) as pool:
        records = dict(zip(archs, pool.map(lambda kv: train(kv[0], a, kv[1]), archs.items())))
        results = dict(zip(archs, pool.map(lambda k: evaluate(k, a), archs)))
    rows = [row(k, records[k], results[k], sampling_rate(k, a)) for k in archs]
    text = table(rows)
    print(text)
    atomic_write(a.out / "results.json", json.dumps(rows, indent=1) + "\n")
    atomic_write(a.out / "table.txt", text + f"\n{a.image}; {a.samples} samples, UNet {a.unet_steps} steps; "
                 f"each run single-threaded, {a.jobs} at a time\n")


if __name__ == "__main__":
    main()
