"""The robustness suite: does `trainer fit` with its defaults work on scenes it was not tuned on?

Builds every scene of bench/scenes.py, trains each with the CLI's defaults (the documented CPU recipe) in fp32
and bf16 with two seeds, evaluates each run with `trainer eval`'s metrics on 100 samples of the EMA
generator, and prints one table (scene x precision x seed) with a verdict per run. A run passes when:
- the collapse guard flagged nothing (no rollback, no collapse, the last health check clean);
- every class covering >= 1 % of the training masks appears in >= 80 % of the samples (appears: covers at
  least a quarter of its training share of the sample; a few stray pixels at the border do not count);
- the class-frequency total variation against the training masks is <= 0.10;
- pixel diversity >= 0.3 and near-copies <= 5 % (`trainer eval`'s: within the copy distance of a training region
  and, with a mask, repeating that region's layout; the table's img% column counts the image criterion alone);
- mask alignment (the OSMIS protocol of `trainer eval`: a UNet trained on the samples, tested on the real
  frames) has mIoU >= 70.
Scenes without a mask are judged on the guard, diversity and near-copies only.

Each job trains and evaluates in its own single-threaded process, --jobs at a time (two single-threaded
runs do about twice the work of one two-threaded run on this 2-core machine); training times are therefore
those of one core. Outputs: the table (stdout and OUT/table.txt), OUT/results.json, and a contact sheet
per scene, OUT/<scene>.png (for each run: its first 6 samples beside their masks). Runs of earlier
invocations into the same OUT, or of invocations running beside this one, stay in the table and sheets, so the suite
can be run in parts.

    .venv/bin/python bench/robustness.py OUT [--scenes a,b] [--seeds 0,1] [--precisions fp32,bf16] [--jobs 2]
        [--samples 100] [--unet-steps 500] [--eval-only] [-- extra trainer fit options]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.files import atomic_write  # noqa: E402  (after the path)

MIN_SHARE, MIN_PRESENCE, MAX_TV, MIN_DIVERSITY, MAX_COPIES, MIN_MIOU = 0.01, 0.80, 0.10, 0.30, 0.05, 70.0
APPEARS = 0.25  # a class appears in a sample where it covers >= this fraction of its training share
SHEET_SAMPLES = 6


def verdict(r: dict) -> list[str]:
    """The criteria a run fails (empty = pass)."""
    fails = []
    if r["events"] or r["health_problems"]:
        fails.append("guard: " + "; ".join(r["events"] + r["health_problems"]))
    if r["diversity"] < MIN_DIVERSITY:
        fails.append(f"diversity {r['diversity']:.2f}")
    if r["near_copies"] > MAX_COPIES:
        fails.append(f"near-copies {100 * r['near_copies']:.0f} %")
    if r.get("presence") is not None:
        rare = [c for c, (share, pres) in enumerate(zip(r["train_share"], r["presence"]))
                if share >= MIN_SHARE and pres < MIN_PRESENCE]
        if rare:
            fails.append("class presence " + ", ".join(f"{r['classes'][c]} {100 * r['presence'][c]:.0f} %" for c in rare))
        if r["tv"] > MAX_TV:
            fails.append(f"TV {r['tv']:.3f}")
        if r["miou"] < MIN_MIOU:
            fails.append(f"mIoU {r['miou']:.1f}")
    return fails


def judge(run: Path, samples: int, unet_steps: int, sheets: Path | None = None) -> dict:
    """A finished run's guard record and `trainer eval` metrics (100 samples of its EMA generator, seed 0),
    with the verdict; writes a contact-sheet row of its first samples to sheets/<run>.png."""
    import numpy as np

    from trainer.evaluate import evaluate, gather
    from trainer.preview import preview_grid

    lines = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    events = [f"{ln['event']} at {ln.get('collapsed_at', ln['iter'])} ({'; '.join(ln['problems'])})"
              for ln in lines if "event" in ln]
    checks = [ln["health"] for ln in lines if "health" in ln]
    m = gather(str(run), samples, seed=0)
    res = evaluate(m, seed=0, unet_steps=unet_steps)
    out = {"iters": lines[-1]["iter"], "s_per_it": round(float(np.median([ln["time"] for ln in lines if "time" in ln])), 4),
           "events": events, "health_problems": checks[-1]["problems"] if checks else [],
           "diversity": res["diversity"]["pixel_diversity"], "ms_ssim": res["diversity"]["ms_ssim"]["mean"],
           "near_copies": res["memorisation"]["near_copies"],
           "image_near_copies": res["memorisation"]["image_near_copies"],
           "layout_iou": res["memorisation"].get("layout_iou_mean"),
           "dist_to_train": res["memorisation"]["dist_to_train_mean"], "classes": m.class_names}
    if m.masks is not None:
        train = res["class_frequencies"]["training"]
        present = np.stack([(m.masks == c).mean((1, 2)) >= APPEARS * train[c] for c in range(len(train))], 1)
        out.update(train_share=train, generated_share=res["class_frequencies"]["generated"],
                   tv=res["class_frequencies"]["total_variation"], presence=present.mean(0).round(3).tolist(),
                   miou=res["mask_alignment"]["miou"], miou_thresholded=res["mask_alignment"]["miou_thresholded"])
    if sheets is not None:
        sheets.mkdir(parents=True, exist_ok=True)
        (sheets / f"{run.name}.png").write_bytes(preview_grid(
            m.images[:SHEET_SAMPLES], None if m.masks is None else m.masks[:SHEET_SAMPLES], m.palette or None,
            columns=SHEET_SAMPLES))
    out["fails"] = verdict(out)
    return out


def worker(a) -> dict:
    import torch

    torch.set_num_threads(1)
    args = json.loads((Path(a.out) / "scenes" / a.scene / "args.json").read_text())
    run = Path(a.out) / "runs" / f"{a.scene}-{a.precision}-{a.seed}"
    cmd = [sys.executable, "-m", "trainer.cli", "fit", args["source"], "--out", str(run), "--overwrite",
           "--precision", a.precision, "--seed", str(a.seed), "--device", "cpu", "-q", *a.fit_args]
    if "mask" in args:
        cmd += ["--mask", args["mask"], "--classes", args["classes"]]
    if a.eval_only:  # re-judge a finished run (after a metric changed): its training record is stored
        record = json.loads((run / "train_s.json").read_text())
    else:
        t0 = time.perf_counter()
        fit = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if not (run / "losses.jsonl").is_file():  # trainer fit refused or crashed before training
            return {"scene": a.scene, "precision": a.precision, "seed": a.seed, "fails": ["crashed"],
                    "crash": (fit.stderr.strip().splitlines() or ["no output"])[-1]}
        record = {"train_s": round(time.perf_counter() - t0, 1), "exit": fit.returncode,
                  "error": (fit.stderr.strip().splitlines() or ["no output"])[-1] if fit.returncode else None}
        (run / "train_s.json").write_text(json.dumps(record))
    out = {"scene": a.scene, "precision": a.precision, "seed": a.seed, "exit": record["exit"],
           "error": record.get("error"),
           "train_s": record["train_s"], **judge(run, a.samples, a.unet_steps, Path(a.out) / "sheets")}
    return out


def job(scene: str, precision: str, seed: int, a) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, str(a.out), "--worker", "--scene", scene, "--precision", precision,
           "--seed", str(seed), "--samples", str(a.samples), "--unet-steps", str(a.unet_steps),
           *(["--eval-only"] if a.eval_only else []), "--", *a.fit_args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"scene": scene, "precision": precision, "seed": seed, "crash": tail[0], "fails": ["crashed"]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def key(r: dict) -> str:
    return f"{r['scene']}-{r['precision']}-{r['seed']}"


def row(r: dict) -> str:
    head = f"{r['scene']:9s} {r['precision']:4s} {r['seed']:>4d}"
    if "crash" in r:
        return f"{head}  CRASH {r['crash']}"
    cls = "-"
    if r.get("presence") is not None:
        cls = " ".join(f"{100 * p:.0f}" for p in r["presence"])
    miou = f"{r['miou']:5.1f}" if "miou" in r else "    -"
    tv = f"{r['tv']:.3f}" if "tv" in r else "    -"
    img = f"{100 * r['image_near_copies']:.0f}" if "image_near_copies" in r else "-"
    return (f"{head} {r['iters']:>6d} {r['train_s'] / 60:6.1f} {r['diversity']:5.2f} {100 * r['near_copies']:5.0f} {img:>5s} "
            f"{tv:>6s} {miou:>6s}  {cls:16s} {'PASS' if not r['fails'] else 'FAIL: ' + ', '.join(r['fails'])}")


def table(results: list[dict]) -> str:
    header = (f"{'scene':9s} {'prec':4s} {'seed':>4s} {'iters':>6s} {'min':>6s} {'div':>5s} {'copy%':>5s} {'img%':>5s} "
              f"{'TV':>6s} {'mIoU':>6s}  {'class presence %':16s} verdict")
    lines = [header, "-" * len(header)] + [row(r) for r in results]
    passed = sum(1 for r in results if not r["fails"])
    lines.append(f"{passed}/{len(results)} runs pass")
    return "\n".join(lines)


def contact_sheets(results: list[dict], out: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    for scene in dict.fromkeys(r["scene"] for r in results):
        rows = []
        for r in (r for r in results if r["scene"] == scene and "crash" not in r):
            img = np.asarray(Image.open(out / "sheets" / f"{scene}-{r['precision']}-{r['seed']}.png").convert("RGB"))
            label = Image.new("RGB", (img.shape[1], 14), "white")
            ImageDraw.Draw(label).text((2, 1), f"{scene} {r['precision']} seed {r['seed']}: "
                                       + ("pass" if not r["fails"] else "FAIL " + ", ".join(r["fails"])), fill="black")
            rows += [np.asarray(label), img]
        if rows:
            Image.fromarray(np.concatenate(rows, 0)).save(out / f"{scene}.png", optimize=True)


def main() -> None:
    argv = sys.argv[1:]
    fit_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenes", default=None, help="comma-separated (default: all of bench/scenes.py)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--unet-steps", type=int, default=500)
    ap.add_argument("--eval-only", action="store_true", help="re-evaluate the runs already in OUT, no training")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--scene")
    ap.add_argument("--precision")
    ap.add_argument("--seed", type=int)
    a = ap.parse_args(argv)
    a.fit_args = fit_args
    if a.worker:
        print(json.dumps(worker(a)))
        return
    from bench.scenes import SCENES, write_scene

    names = a.scenes.split(",") if a.scenes else list(SCENES)
    for name in names:  # built once, before the jobs start
        args = write_scene(SCENES[name](), a.out / "scenes" / name)
        (a.out / "scenes" / name / "args.json").write_text(json.dumps(args))
    # seed-major order: a suite cut short still covers every scene
    jobs = [(s, p, int(seed)) for seed in a.seeds.split(",") for p in a.precisions.split(",") for s in names]
    # results of other invocations into the same OUT (earlier or running beside this one) stay in the table unless
    # this one redoes them: the file is read again before every write
    done = a.out / "results.json"
    mine = {}
    t0 = time.time()
    with ThreadPoolExecutor(a.jobs) as pool:
        for r in pool.map(lambda j: job(*j, a), jobs):
            mine[key(r)] = r
            print(row(r), flush=True)
            results = {key(r): r for r in (json.loads(done.read_text()) if done.exists() else [])} | mine
            report(list(results.values()), a, time.time() - t0)  # after every run: a suite cut short keeps its table
    print("\n" + (a.out / "table.txt").read_text())


def report(results: list[dict], a, wall_s: float) -> None:
    from bench.scenes import SCENES

    atomic_write(a.out / "results.json", json.dumps(results, indent=1) + "\n")
    order = list(SCENES)
    results = sorted(results, key=lambda r: (order.index(r["scene"]), r["precision"] != "fp32", r["seed"]))
    text = table(results)
    text += (f"\ntrainer fit defaults{' + ' + ' '.join(a.fit_args) if a.fit_args else ''}; {a.samples} samples per "
             f"run, UNet {a.unet_steps} steps; {a.jobs} single-threaded jobs at once; last invocation's wall "
             f"{wall_s / 60:.0f} min")
    atomic_write(a.out / "table.txt", text + "\n")
    contact_sheets(results, a.out)


if __name__ == "__main__":
    main()
