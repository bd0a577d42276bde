"""Sampling on a Ray cluster (the `ray` extra; imported only by `runtime sample --ray` and by users).

    from runtime.ray import sample_dataset
    ds = sample_dataset("coins", 100_000, seed=0)   # ray.data.Dataset: index, image (H, W, 3), mask (H, W) uint8

The scene is resolved and hash-checked once, on the driver; its config.json and ONNX go to the actors through
the object store (nothing is downloaded per actor, no shared disk needed). Each actor loads one single-threaded
onnxruntime session and samples through the runtime's Sampler, so sample i depends only on (seed, i): the
cluster gives the bytes a local `runtime sample` gives. `runtime sample --ray` writes with the same writers as
the local job (runtime.writer, runtime.webdataset), each actor writing whole work units (a run of indices, or
one shard) by rename, so a killed job leaves only complete files and `--resume` finishes what is missing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.entry import Entry
from zoo.entry_config import ONNX_FILES
from zoo.errors import UserError
from zoo.ray_session import connect

from .encoders import write_unit
from .job import SHARD_SIZE, finish_job, start_job, todo_blocks
from .sampler import RECONSTRUCTION, Sampler, find_scene
from .writer import complete_indices, flat_palette

__all__ = ["sample_dataset", "sample_to_folder_on_ray", "connect"]   # connect: zoo.ray_session's


def _payload(entry: Entry, precision: str, start_scale: int = 0) -> dict[str, bytes]:
    """What an actor needs to sample: config.json and the precision's ONNX (both checked on the driver), and
    for --start-scale the reconstruction noise."""
    names = ("config.json", ONNX_FILES[precision], *([RECONSTRUCTION] if start_scale else []))
    return {name: (entry.root / name).read_bytes() for name in names}


def _open(payload, precision: str, device: str = "cpu", *, start_scale: int = 0, grid=None) -> Sampler:
    import ray

    if isinstance(payload, ray.ObjectRef):   # constructor arguments arrive unresolved
        payload = ray.get(payload)
    with tempfile.TemporaryDirectory(prefix="oneshot-gan-entry-") as tmp:   # the session holds the model after
        root = Path(tmp)
        for name, data in payload.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        # checks the ONNX against config.json again; one thread: one actor per CPU
        sampler = Sampler(Entry.load(root), precision, device=device, threads=1 if device == "cpu" else None)
        sampler.set_start_scale(start_scale, grid)
        return sampler


class _Sample:
    """Actor: one sampler, loaded once; rows of [lo, hi) index ranges in, one row per sample out."""

    def __init__(self, payload, precision: str, seed: int, grid: tuple[int, int], device: str = "cpu",
                 start_scale: int = 0):
        self.sampler = _open(payload, precision, device, start_scale=start_scale, grid=grid)
        self.seed, self.grid = seed, tuple(grid)

    def __call__(self, batch: dict) -> dict:
        idx = np.concatenate([np.arange(int(lo), int(hi), dtype=np.int64) for lo, hi in zip(batch["lo"], batch["hi"])])
        images, masks = self.sampler.run(idx, self.seed, self.grid)
        return {"index": idx, "image": images, **({"mask": masks} if masks is not None else {})}


def sample_dataset(scene: str, count: int, *, seed: int = 0, start: int = 0, grid: tuple[int, int] | None = None,
                   precision: str = "fp32", actors: int | None = None, batch_size: int = 16, index: str | None = None,
                   hub=None, device: str = "cpu", gpus_per_actor: float | None = None, start_scale: int = 0):
    """A ray.data.Dataset of samples start .. start+count-1 with columns index, image (H, W, 3 uint8) and mask
    (H, W uint8 class ids; absent for models without masks), batch_size samples per actor call, on `device`
    ("cuda": onnxruntime's CUDA provider, one GPU per actor unless gpus_per_actor says otherwise); start_scale:
    SinGAN entries' --start-scale. Connects to Ray first if needed. The rows are index ranges made on the driver
    (no read tasks: actors may hold every CPU)."""
    import ray
    import ray.data

    if count <= 0 or start < 0:
        raise UserError(f"samples {start} .. {start + count - 1}: count must be positive and start >= 0")
    connect()
    found = find_scene(scene, index, hub)
    sampler = Sampler(found.entry, precision, threads=1)
    grid = sampler.grid_for(grid)
    sampler.set_start_scale(start_scale, grid)   # checked here, once, before any actor starts
    payload = ray.put(_payload(found.entry, precision, start_scale))
    units = [{"lo": lo, "hi": min(lo + batch_size, start + count)} for lo in range(start, start + count, batch_size)]
    return ray.data.from_items(units, override_num_blocks=min(len(units), 4096)).map_batches(
        _Sample, fn_constructor_kwargs={"payload": payload, "precision": precision, "seed": seed, "grid": grid,
                                        "device": device, "start_scale": start_scale},
        batch_size=1, batch_format="numpy", num_cpus=1, num_gpus=_gpus(gpus_per_actor, device),
        compute=ray.data.ActorPoolStrategy(size=actors or _cluster_cpus()))


def _gpus(per_actor: float | None, device: str) -> float:
    """GPUs per actor; an actor the cluster cannot place would wait for ever, so that is an error now."""
    import ray

    gpus = (1.0 if device == "cuda" else 0.0) if per_actor is None else per_actor
    have = ray.cluster_resources().get("GPU", 0)
    if gpus > have:
        raise UserError(f"each actor needs {gpus:g} GPU(s) and the Ray cluster has {have:g} "
                        "(--gpus-per-actor, --device)")
    return gpus


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class _Write:
    """Actor: samples one work unit (a run of indices, or one shard's) and writes it with the local job's writers."""

    def __init__(self, payload, precision: str, device: str, seed: int, grid, out: str, fmt: str,
                 compress_level: int, mask_preview: bool, start_scale: int = 0):
        self.sampler = _open(payload, precision, device, start_scale=start_scale, grid=grid)
        self.seed, self.grid, self.out, self.fmt = seed, tuple(grid), out, fmt
        self.compress_level, self.mask_preview = compress_level, mask_preview
        entry = self.sampler.entry
        self.palette = flat_palette(entry.palette) if entry.has_masks else []

    def __call__(self, batch: dict) -> dict:
        written = 0
        for lo, hi in zip(batch["lo"], batch["hi"]):
            idx = np.arange(int(lo), int(hi), dtype=np.int64)
            images, masks = self.sampler.run(idx, self.seed, self.grid)
            write_unit(self.out, self.fmt, idx, images, masks, self.palette, self.compress_level, self.mask_preview)
            written += len(idx)
        return {"written": np.asarray([written])}


def _units(start: int, count: int, done: set[int], fmt: str, batch_size: int) -> list[tuple[int, int]]:
    """Work units as [lo, hi) index ranges: for shards, the shard-aligned groups the local job writes; for PNGs,
    contiguous runs of at most batch_size indices still to do."""
    if fmt != "png":
        end, units = start + count, []
        for s in range(start // SHARD_SIZE, (end - 1) // SHARD_SIZE + 1):
            lo, hi = max(start, s * SHARD_SIZE), min(end, (s + 1) * SHARD_SIZE)
            if lo not in done:   # a shard is whole or absent
                units.append((lo, hi))
        return units
    units = []
    for block in todo_blocks(start, count, done):
        for run in np.split(block, np.flatnonzero(np.diff(block) != 1) + 1):
            units += [(int(run[i]), int(run[min(i + batch_size, len(run)) - 1]) + 1)
                      for i in range(0, len(run), batch_size)]
    return units


def sample_to_folder_on_ray(sampler: Sampler, out: str | Path, *, scene: str, count: int, seed: int = 0, start: int = 0,
                            grid=None, batch_size: int | None = None, compress_level: int = 1,
                            mask_preview: bool = False, resume: bool = False, overwrite: bool = False,
                            quiet: bool = False, argv: list[str] | None = None, fmt: str = "png",
                            actors: int | None = None, address: str | None = None,
                            gpus_per_actor: float | None = None) -> dict:
    """`runtime sample --ray`: the local job's folder, files and dataset.json, written by Ray actors, each
    holding one CPU and gpus_per_actor GPUs [1 when the sampler's device is CUDA, else 0]. out: a folder every
    node sees (a shared file system), or for the shard formats a URI (runtime.output) every node can write to."""
    import ray
    import ray.data
    from tqdm import tqdm

    if sampler.backend != "onnxruntime":
        raise UserError("--ray samples with onnxruntime (--backend auto or onnxruntime)")
    started = connect(address)
    try:
        job = start_job(sampler, out, scene=scene, count=count, seed=seed, start=start, grid=grid,
                        batch_size=batch_size, workers=None, resume=resume, overwrite=overwrite, argv=argv, fmt=fmt,
                        drop_worst=0.0, mask_preview=mask_preview)
        units = _units(start, count, job.done, fmt, job.batch_size)
        t0 = time.perf_counter()
        written = 0
        if units:
            payload = ray.put(_payload(sampler.entry, sampler.precision, sampler.start_scale))
            # one block per unit (up to 4096): every actor gets work, and a killed actor loses one unit
            ds = ray.data.from_items([{"lo": lo, "hi": hi} for lo, hi in units],
                                     override_num_blocks=min(len(units), 4096))
            ds = ds.map_batches(_Write, fn_constructor_kwargs={
                "payload": payload, "precision": sampler.precision, "device": sampler.device, "seed": seed,
                "grid": job.grid, "out": job.out.location,
                "fmt": fmt, "compress_level": compress_level, "mask_preview": mask_preview,
                "start_scale": sampler.start_scale},
                batch_size=1, batch_format="numpy", num_cpus=1, num_gpus=_gpus(gpus_per_actor, sampler.device),
                compute=ray.data.ActorPoolStrategy(size=actors or _cluster_cpus()))
            with tqdm(total=count, initial=len(job.done), unit="sample", disable=quiet, dynamic_ncols=True,
                      desc="sample (ray)") as bar:
                try:
                    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                        n = int(np.sum(batch["written"]))
                        written += n
                        bar.update(n)
                except ray.exceptions.RayError as e:   # an actor failed: say what, keep what is written
                    reason = str(e).strip().splitlines()[-1][:300]
                    raise UserError(f"{job.out.label}: the Ray job failed ({reason}); "
                                    f"{len(complete_indices(job.out, fmt))} "
                                    "samples are complete, finish with --resume") from None
        finish_job(job.out, seed, sampler, fmt)
        elapsed = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    return {"out": job.out.label, "written": written, "skipped": len(job.done), "dropped": 0,
            "seconds": round(elapsed, 3), "samples_per_s": round(written / elapsed, 2) if written else 0.0,
            "batch_size": job.batch_size, "workers": actors, "ray": True,
            **{k: job.info[k] for k in ("grid", "size", "precision", "seed")}}
