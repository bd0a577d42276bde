"""The evaluation report: report.json (every number and its definition) and report.html, one self-contained page
(images embedded) with a sample grid, mask overlays, nearest-training-view pairs and the metric table."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.files import atomic_write

from .evaluate import Material
from .metrics import training_view
from .preview import colorize


def _png(canvas: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _grid(tiles: list[np.ndarray], columns: int, pad: int = 3) -> np.ndarray:
    h, w, _ = tiles[0].shape
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        y, x = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        canvas[y:y + h, x:x + w] = t
    return canvas


def _overlay(image: np.ndarray, mask: np.ndarray, palette) -> np.ndarray:
    colours = colorize(mask, palette).astype(np.float32)
    out = np.where(mask[..., None] > 0, 0.45 * image + 0.55 * colours, image)
    return out.round().astype(np.uint8)


def metric_rows(result: dict) -> list[tuple[str, str, str]]:
    """(metric, value, definition) for the report's table and the CLI's text output."""
    d, mem, q = result["diversity"], result["memorisation"], result["quality_score"]
    defs = result["definitions"]
    rows = [("pixel diversity", f"{d['pixel_diversity']:.3f}", defs["pixel_diversity"]),
            ("mean pairwise MS-SSIM", f"{d['ms_ssim']['mean']:.3f} ({d['ms_ssim']['pairs']} pairs)", defs["ms_ssim"]),
            ("dist. to train (mean / min)", f"{mem['dist_to_train_mean']:.4f} / {mem['dist_to_train_min']:.4f}",
             defs["dist_to_train"]),
            ("image near-copies", f"{100 * mem['image_near_copies']:.1f} %", defs["image_near_copies"]),
            *([("layout IoU with the matched region (mean)", f"{mem['layout_iou_mean']:.3f}", defs["layout_iou"])]
              if "layout_iou_mean" in mem else []),
            ("near-copies", f"{100 * mem['near_copies']:.1f} %", defs["near_copies"]),
            ("quality score (median / p85)", f"{q['median']:.4f} / {q['p85']:.4f}", defs["quality_score"])]
    if "mask_alignment" in result:
        a, names = result["mask_alignment"], result["classes"]
        per = ", ".join(f"{n} {v:.1f}" for n, v in zip(names, a["per_class_iou"]) if v is not None)
        rows += [("mIoU (UNet on generated pairs)", f"{a['miou']:.1f} ({per})", defs["miou"]),
                 ("mIoU, thresholded (OSMIS)", f"{a['miou_thresholded']:.1f}", defs["miou_thresholded"])]
        f = result["class_frequencies"]
        freq = ", ".join(f"{n} {100 * g:.1f}/{100 * r:.1f} %" for n, g, r in zip(names, f["generated"], f["training"]))
        rows.append(("class frequencies (generated/real)", f"{freq}; TV {f['total_variation']:.3f}",
                     defs["class_frequencies"]))
    for key, label in (("sifid", "SIFID (mean / best)"), ("lpips", "LPIPS (diversity / dist. to train)")):
        m = result[key]
        value = m["reason"] if not m["available"] else (
            f"{m['mean']:.3f} / {m['best']:.3f}" if key == "sifid" else f"{m['diversity']:.3f} / {m['dist_to_train']:.3f}")
        rows.append((label, value, defs[key]))
    return rows


def write_report(result: dict, m: Material, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "report.json", json.dumps(result, indent=2) + "\n")
    n = min(12, len(m.images))
    samples = [m.images[i] for i in range(n)]
    if m.masks is not None:
        samples = [t for i in range(n) for t in (m.images[i], _overlay(m.images[i], m.masks[i], m.palette))]
    closest = sorted(result["per_sample"], key=lambda s: s["dist_to_train"])[:6]
    pairs = [t for s in closest
             for t in (m.images[s["index"]], training_view(m.frames, tuple(s["nearest_region"].values())))]
    table = "\n".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td class=d>{html.escape(c)}</td></tr>"
                      for a, b, c in metric_rows(result))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>eval: {html.escape(result['scene'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td{{padding:4px 8px;vertical-align:top}}
td.d{{color:#555;font-size:85%}}tr:nth-child(odd){{background:#f4f4f4}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(result['scene'])}</h1>
<p>{result['samples']} samples (seed {result['seed']}, {result['size'][0]}x{result['size'][1]}) against
{result['training_frames']} training frame(s).</p>
<table>{table}</table>
<h2>Samples{' and mask overlays' if m.masks is not None else ''}</h2><img src="{_png(_grid(samples, 4))}">
<h2>Closest to the training data</h2><p>The 6 samples nearest to the training data, each beside the training region it matched (flips, shifts, crops, zooms).</p>
<img src="{_png(_grid(pairs, 4))}">
<h2>Training frames</h2><img src="{_png(_grid(list(m.frames[:8]), 4))}">
</body></html>
"""
    atomic_write(out / "report.html", page)
