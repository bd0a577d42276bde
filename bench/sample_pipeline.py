"""Where `runtime sample`'s time goes on a small scene, and what batches in flight change (issue 14, part 3).

Interleaved repetitions, medians (min-max for the noise), all in this one run:
- per-sample costs on one core: the RGB image PNG (Pillow with Huffman-only coding, as written before, against
  runtime.writer.image_png_bytes, as now), the palette mask PNG, and writing one file
  (zoo.files.atomic_write without fsync, as before, against zoo.files.write_whole, as now);
- model only (Sampler.iter_batches over COUNT samples, nothing written) and end to end (`runtime sample`'s
  sample_to_folder writing PNG pairs into --dir) with one batch in flight (as before) and two (as now), with the
  share of the two cores that was busy (CPU time of this process and its encoders / wall time).

    .venv/bin/python bench/sample_pipeline.py [--scene coins] [--reps 3] [--count 1536] [--dir /tmp]

The file system matters: --dir on a tmpfs (/dev/shm) leaves out the kernel's file-system work, which on a
virtual disk costs 1-2 ms per sample and varies with its write-back.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the encoders, once their pool is shut down)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn) -> tuple[float, float]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (cpu_seconds() - c0) / wall


def per_item_ms(fn, items, reps: int = 7) -> list[float]:
    for x in items[:4]:
        fn(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        times.append(1e3 * (time.perf_counter() - t0) / len(items))
    return times


def encoder_costs(sampler, folder: Path) -> list[tuple[str, list[float], str]]:
    from PIL import Image

    from runtime.writer import flat_palette, image_png_bytes, mask_png_bytes
    from zoo import files

    images, masks = sampler.sample(indices=np.arange(64), seed=0)
    palette = flat_palette(sampler.entry.palette)

    def pillow(a):   # what the runtime wrote before: Pillow, adaptive row filters, Huffman-only coding
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY)
        return buf.getvalue()

    def kib(fn):
        same = all(np.array_equal(np.asarray(Image.open(io.BytesIO(fn(a)))), a) for a in images)
        return f"{np.mean([len(fn(a)) for a in images]) / 1024:.1f} KiB, same pixels: {same}"

    rows = [("image PNG, Pillow (before: adaptive, Huffman only)", per_item_ms(pillow, images), kib(pillow)),
            ("image PNG, image_png_bytes (now: Paeth, Huffman)", per_item_ms(lambda a: image_png_bytes(a, 1), images),
             kib(lambda a: image_png_bytes(a, 1)))]
    if masks is not None:
        rows.append(("mask PNG (palette), Pillow", per_item_ms(lambda m: mask_png_bytes(m, palette, 1), masks), ""))
    data = image_png_bytes(images[0], 1)
    counter = iter(range(10 ** 9))
    old = lambda _: files.atomic_write(folder / f"a{next(counter)}.png", data, durable=False)  # noqa: E731
    new = lambda _: files.write_whole(folder / f"w{next(counter)}.png", data)  # noqa: E731
    # interleaved: the kernel's write-back makes later writes slower than earlier ones
    times: dict = {old: [], new: []}
    for _ in range(7):
        for fn in times:
            times[fn] += per_item_ms(fn, images, reps=1)
    rows.append(("write one file: atomic_write (before)", times[old], ""))
    rows.append(("write one file: write_whole (now)", times[new], ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", default="coins")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--count", type=int, default=1536)
    ap.add_argument("--dir", type=Path, default=None, help="where the samples are written [the system's temp]")
    args = ap.parse_args()

    from runtime.job import auto_batch, sample_to_folder
    from runtime.sampler import Sampler, find_scene

    sampler = Sampler(find_scene(args.scene).entry)
    b = auto_batch(sampler.output_size(sampler.entry.trained_grid))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        (tmp / "files").mkdir()
        costs = encoder_costs(sampler, tmp / "files")
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        sample_to_folder(sampler, tmp / "warm", scene=args.scene, count=4 * b, quiet=True, argv=[])
        for rep in range(args.reps):
            for flight in (1, 2):
                sampler.batches_in_flight = flight
                wall, busy = timed(lambda: sum(len(x[0]) for x in sampler.iter_batches(0, args.count, batch_size=b)))
                results.setdefault(("model", flight), []).append((args.count / wall, busy))
                out = tmp / f"o{rep}-{flight}"
                wall, busy = timed(lambda: sample_to_folder(sampler, out, scene=args.scene, count=args.count,
                                                            quiet=True, argv=[]))
                results.setdefault(("e2e", flight), []).append((args.count / wall, busy))
    print(f"scene {args.scene}, {sampler.output_size(sampler.entry.trained_grid)}, batch {b}, {args.count} samples "
          f"per run, {args.reps} interleaved repetitions, samples written to {args.dir or tempfile.gettempdir()}")
    print("\nper sample, one core (median ms, min-max)")
    for name, times, note in costs:
        spread = f"{statistics.median(times):6.3f}  ({min(times):.3f}-{max(times):.3f})" if times else "     -"
        print(f"  {name:46s} {spread}  {note}")
    print("\nthroughput (median samples/s, min-max; cores busy of 2)")
    med = {}
    for (kind, flight), runs in results.items():
        rates = [r for r, _ in runs]
        med[kind, flight] = statistics.median(rates)
        print(f"  {kind:5s} batches in flight {flight}:  {med[kind, flight]:7.1f}  ({min(rates):.1f}-{max(rates):.1f})"
              f"  busy {statistics.median(c for _, c in runs):.2f}")
    for flight in (1, 2):
        print(f"  end to end / model only, {flight} in flight: {med['e2e', flight] / med['model', flight]:.2f}")
    print(f"  end to end, 2 in flight / 1 in flight:  {med['e2e', 2] / med['e2e', 1]:.2f}")
    print(f"  end to end (2 in flight) / model only as before (1 in flight): {med['e2e', 2] / med['model', 1]:.2f}")


if __name__ == "__main__":
    main()
