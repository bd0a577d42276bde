"""Which training change keeps scenes from collapsing? Trains suite scenes under named variants of the training
settings, with several seeds, and reports the collapse guard's signals (trainer/health.py: diversity of a fixed
latent batch through the raw G, saturated share, per-class presence, D's fake loss) along each run.

Every (scene, variant, seed) job runs in its own single-threaded process, --jobs at a time.

    .venv/bin/python bench/collapse_study.py --scenes balloons --variants default,no_prior --seeds 0,1 \\
        [--iters 3000] [--stop-at 1500] [--max-size 160] [--width 0.25] [--precision fp32] [--json out.json] [--eval]

A variant is a name from VARIANTS (TrainConfig overrides); --iters sets the schedule (warm-up, EMA horizon),
--stop-at ends the job earlier to save time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Ablations of the final trainer: each turns one issue-11 change off again. The variants of the experiment log
# that used since-removed code (other MCA weightings, a soft KL prior, R1) ran at commits 364ac8c..b454be4, the
# hinge ("rescue") form of the class-frequency prior at 2b6d9a9, the uncentred prior up to b170414.
VARIANTS: dict[str, dict] = {
    "default": {},
    "no_prior": {"lambda_freq": 0.0},
    "no_bounds": {"ceiling": 0.0, "floor": 0.0},
    "no_floor": {"floor": 0.0},
    "nearest_masks": {"mask_resize": "nearest"},
    "lr_2e-4": {"lr_g": 2e-4, "lr_d": 2e-4},
    "dr5": {"lambda_dr": 0.5},
    "freq03": {"lambda_freq": 0.3},
    "aug03": {"aug_prob": 0.3},
    "before": {"lambda_freq": 0.0, "ceiling": 0.0, "floor": 0.0, "mask_resize": "nearest", "lr_g": 2e-4,
               "lr_d": 2e-4},  # the trainer as it was before issue 11
}
CPU_LR = {"lr_g": 1e-4, "lr_d": 1e-4}  # the CPU recipe's (trainer.config.RECIPES); TrainConfig's default is the reference's
VARIANTS = {k: {**CPU_LR, **v} for k, v in VARIANTS.items()}


def worker(a) -> dict:
    import numpy as np
    import torch

    from bench.robustness import judge
    from bench.scenes import SCENES, write_scene
    from trainer.config import auto_config
    from trainer.data import load_scene, to_training_arrays
    from trainer.config import TrainConfig
    from trainer.train import CollapseError, Trainer, to_float_images, write_run

    torch.set_num_threads(1)
    scene_dir = Path(a.tmp) / "scenes" / a.scene
    args = write_scene(SCENES[a.scene](), scene_dir)
    scene = load_scene(Path(args["source"]), Path(args["mask"]) if "mask" in args else None)
    mc = auto_config(*scene.size, max_size=a.max_size, num_classes=scene.num_classes, width_mult=a.width)
    tc = TrainConfig(iters=a.iters, seed=a.seed, precision=a.precision, device="cpu", save_every=500,
                     preview_every=a.iters, check_every=a.check_every, **VARIANTS[a.variant]).resolved()
    images, masks = to_training_arrays(scene, mc.height, mc.width)
    run = Path(a.tmp) / "runs" / f"{a.scene}-{a.variant}-{a.precision}-{a.seed}"
    write_run(run, model_cfg=mc, train_cfg=tc, data_info={"palette": scene.palette, "class_names": scene.class_names},
              images_u8=images, masks=masks)
    trainer = Trainer(run, mc, tc, to_float_images(images), masks, scene.palette or None)

    def stop(t):
        if t.iteration >= a.stop_at:
            t.stop_requested = True

    try:
        trainer.fit(quiet=True, on_step=stop)
    except CollapseError:
        pass  # stopped by the guard: the events say so
    trainer.write_preview()
    if a.keep_previews:
        dst = Path(a.keep_previews) / f"{run.name}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((run / "preview.png").read_bytes())
    lines = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    checks = [{"iter": ln["iter"], **ln["health"]} for ln in lines if "health" in ln]
    return {"scene": a.scene, "variant": a.variant, "seed": a.seed, "precision": a.precision,
            "train_share": None if trainer.probe.train_share is None else
            [round(float(v), 4) for v in trainer.probe.train_share],
            "s_per_it": float(np.median([ln["time"] for ln in lines if "time" in ln])), "checks": checks,
            "events": [ln for ln in lines if "event" in ln],
            "eval": judge(run, 100, 500) if a.eval else None}


def job(scene: str, variant: str, seed: int, a, tmp: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", "--scene", scene, "--variant", variant, "--seed", str(seed),
           "--iters", str(a.iters), "--stop-at", str(a.stop_at), "--max-size", str(a.max_size),
           "--width", str(a.width), "--precision", a.precision, "--check-every", str(a.check_every),
           "--tmp", str(tmp)] + (["--keep-previews", a.keep_previews] if a.keep_previews else []) \
        + (["--eval"] if a.eval else [])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        return {"scene": scene, "variant": variant, "seed": seed, "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def describe(r: dict) -> str:
    if "error" in r:
        return f"{r['scene']:9s} {r['variant']:12s} seed {r['seed']}: FAILED {r['error']}"
    rows = []
    for c in r["checks"]:
        cls = "/".join(f"{v:.1f}" for v in c.get("class_presence", []))
        flag = ("!" + ";".join(c["problems"])) if c["problems"] else ""
        rows.append(f"{c['iter']}:d{c['diversity']:.2f} s{c['saturated']:.2f} f{c['d_fake']:.2f} p{cls}{flag}")
    return (f"{r['scene']:9s} {r['variant']:12s} {r['precision']} seed {r['seed']} ({r['s_per_it']:.2f} s/it): "
            f"{summary(r)}\n    " + "\n    ".join(rows))


def summary(r: dict) -> str:
    """Problem checks, rollbacks, and the median diversity and worst class presence over the second half."""
    import numpy as np

    checks = r["checks"]
    late = checks[len(checks) // 2:] or checks
    text = (f"{sum(bool(c['problems']) for c in checks)}/{len(checks)} problem checks, "
            f"{len(r.get('events', []))} rollback(s), late diversity {np.median([c['diversity'] for c in late]):.2f}")
    if late and "class_presence" in late[0]:
        text += f", late worst class presence {min(np.median([c['class_presence'][k] for c in late]) for k in range(len(late[0]['class_presence']))):.2f}"
    e = r.get("eval")
    if e:
        text += (f"; eval: div {e['diversity']:.2f}, copies {100 * e['near_copies']:.0f} %"
                 + (f", TV {e['tv']:.3f}, mIoU {e['miou']:.1f}, presence {e['presence']}" if "miou" in e else "")
                 + (" PASS" if not e["fails"] else " FAIL: " + ", ".join(e["fails"])))
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", default="balloons")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--stop-at", type=int, default=None)
    ap.add_argument("--max-size", type=int, default=160)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--check-every", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep-previews", help="folder for each run's final EMA preview")
    ap.add_argument("--workdir", help="keep scenes and runs here (default: a temporary folder)")
    ap.add_argument("--eval", action="store_true", help="judge each finished run as bench/robustness.py does")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--scene")
    ap.add_argument("--variant")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--tmp")
    a = ap.parse_args()
    a.stop_at = a.stop_at or a.iters
    if a.worker:
        print(json.dumps(worker(a)))
        return
    jobs = [(s, v, int(seed)) for s in a.scenes.split(",") for v in a.variants.split(",")
            for seed in a.seeds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(a.jobs) as pool:
        tmp = a.workdir or tmp
        for r in pool.map(lambda j: job(*j, a, Path(tmp)), jobs):
            results.append(r)
            print(describe(r), flush=True)
            if a.json:
                a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
