"""A `runtime sample` job: samples start .. start+count-1 into a dataset folder (for the shard formats, also a URI:
runtime.output), inference, latent generation and encoding overlapping (encoding in worker processes), resumable,
Ctrl-C safe."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from zoo.entry import safe_member
from zoo.errors import UserError
from zoo.quality import SCORE, Scorer, drop_threshold
from zoo.versions import versions

from .encoders import encoder_pool, write_unit
from .latents import MAX_INDEX, MAX_SEED
from .output import Output
from .sampler import Sampler
from .writer import complete_indices, flat_palette, write_metadata

__all__ = ["sample_to_folder", "Interrupted", "SETTINGS"]

SHARD_SIZE = 256  # samples per shard file (webdataset / npz), aligned on absolute indices

# must match to --resume: a re-exported model or a moved Hub branch is another model
SETTINGS = ("scene", "repo", "revision", "model_sha256", "seed", "grid", "precision", "latent_scheme", "start_scale",
            "format", "drop_worst")
ADDED_SETTINGS = {"start_scale": 0}   # settings added after the first release, with the value they had before
CALIBRATION = 256  # --drop-worst: the threshold is the score quantile over the first this-many samples


class Interrupted(Exception):
    def __init__(self, complete: int):
        self.complete = complete


def prepare_out(out: Output, resume: bool, overwrite: bool) -> None:
    try:
        _prepare_out(out, resume, overwrite)
    except OSError as e:   # a name too long, a read-only or vanished parent, a store that refuses, ...
        raise UserError(f"{out.label}: cannot create the output folder ({e.strerror or e})") from None


def _prepare_out(out: Output, resume: bool, overwrite: bool) -> None:
    if out.is_file():
        raise UserError(f"{out.label}: exists and is not a folder")
    if out.names() and not (resume or overwrite):
        raise UserError(f"{out.label}: folder is not empty (pass --resume to finish it, or --overwrite)")
    if overwrite and not resume and out.names():
        if not out.is_file("dataset.json"):
            raise UserError(f"{out.label}: not a sample folder (no dataset.json); --overwrite only replaces those")
        for name in ("images", "masks", "previews", "shards", "metadata.jsonl", "dataset.json"):
            out.remove(name)
    out.makedirs()
    if not out.writable():
        raise UserError(f"{out.label}: not writable")


def dataset_info(sampler: Sampler, *, scene: str, seed: int, grid, start: int, count: int, argv: list[str],
                 fmt: str) -> dict:

    entry, found = sampler.entry, sampler.scene
    return {"scene": scene, "entry": str(entry.root.resolve()),
            "repo": found.ref.repo if found else None,
            # the Hub commit; for bundled and local entries, the sha256 of the model file that ran
            "revision": (found.commit if found else None) or sampler.model_sha256,
            "model_sha256": sampler.model_sha256,   # of the ONNX file that ran, checked against config.json
            "seed": seed, "latent_scheme": sampler.latent_scheme, "start_scale": sampler.start_scale,
            "grid": list(grid), "size": list(sampler.output_size(grid)),
            "start_index": start, "count": count, "format": fmt, "backend": sampler.backend, "device": sampler.device,
            "precision": sampler.precision, "classes": entry.class_names, "palette": entry.palette,
            "versions": versions("onnxruntime", python=True),
            "drop_worst": None, "command": " ".join(argv)}


def check_resume(out: Output, info: dict) -> None:
    if not out.is_file("dataset.json"):
        if out.names():
            raise UserError(f"{out.label}: not a sample folder (no dataset.json); --resume only finishes those")
        return
    try:
        old = json.loads(out.read("dataset.json"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{out.label}/dataset.json: not readable ({e}); cannot tell what was sampled, "
                        "use a new --out") from None
    if not isinstance(old, dict):
        raise UserError(f"{out.label}/dataset.json: not a dataset description; cannot tell what was sampled, "
                        "use a new --out")
    old = {**ADDED_SETTINGS, **old}   # a folder sampled before a setting existed had its default
    diff = [k for k in SETTINGS if old.get(k) != info.get(k)]
    if diff:
        raise UserError(f"{out.label}: was sampled with other settings "
                        f"({', '.join(f'{k}={old.get(k)}' for k in diff)}); use a new --out")


class Job(NamedTuple):
    out: Output
    grid: tuple[int, int]
    batch_size: int
    info: dict          # dataset.json
    done: set[int]      # indices already complete (--resume)
    scorer: Scorer | None


def start_job(sampler: Sampler, out: str | Path, *, scene: str, count: int, seed: int, start: int, grid, batch_size,
              workers, resume: bool, overwrite: bool, argv, fmt: str, drop_worst: float, mask_preview: bool) -> Job:
    """Everything before the first sample, shared by the local and the Ray jobs: check the request, prepare
    (or check, on --resume) the output folder (a path, or a URI for the shard formats), write dataset.json."""
    if count <= 0 or start < 0 or start + count > MAX_INDEX:
        raise UserError(f"samples {start} .. {start + count - 1}: --count must be positive and indices within "
                        f"0 .. {MAX_INDEX - 1}")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be within 0 .. {MAX_SEED}, got {seed}")
    if batch_size is not None and batch_size < 1 or workers is not None and workers < 0:
        raise UserError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    if not 0 <= drop_worst < 1:
        raise UserError(f"--drop-worst must be in [0, 1), got {drop_worst}")
    out = Output(out)
    if fmt == "png" and not out.local:
        raise UserError(f"{out.label}: PNG folders are written to a local or mounted folder; write to a URI with "
                        "--format webdataset or npz")
    grid = sampler.grid_for(grid)
    batch_size = batch_size or auto_batch(sampler.output_size(grid))
    scorer = quality_scorer(sampler) if drop_worst else None
    info = dataset_info(sampler, scene=scene, seed=seed, grid=grid, start=start, count=count, argv=argv or sys.argv,
                        fmt=fmt)
    prepare_out(out, resume, overwrite)
    if scorer is not None:
        info["drop_worst"] = calibrate(sampler, scorer, seed=seed, start=start, count=count, grid=grid,
                                      batch_size=batch_size, fraction=drop_worst)
    if resume:
        check_resume(out, info)
    masks = ["masks"] + (["previews"] if mask_preview else []) if sampler.entry.has_masks else []
    folders = ["images", *masks] if fmt == "png" else ["shards"]
    for sub in folders:
        out.makedirs(sub)
        if resume:   # what writers killed mid-file left (zoo.files.atomic_path's names); never a finished file
            for stale in out.names(sub):
                if stale.startswith(".") and stale.endswith(".tmp"):
                    out.remove(f"{sub}/{stale}")
    out.write("dataset.json", (json.dumps(info, indent=2) + "\n").encode())
    done = complete_indices(out, fmt) if resume else set()
    return Job(out, grid, batch_size, info, {i for i in done if start <= i < start + count}, scorer)


def sample_to_folder(sampler: Sampler, out: str | Path, *, scene: str, count: int, seed: int = 0, start: int = 0,
                     grid=None, batch_size: int | None = None, workers: int | None = None, compress_level: int = 1,
                     mask_preview: bool = False, resume: bool = False, overwrite: bool = False, quiet: bool = False,
                     argv: list[str] | None = None, fmt: str = "png", drop_worst: float = 0.0) -> dict:
    """Write samples start .. start+count-1; returns a summary. Ctrl-C leaves only complete samples.
    drop_worst: leave out samples whose quality score is above the (1 - drop_worst) quantile of the scores of
    the first CALIBRATION samples (all of them when count is smaller), so whether sample i is kept depends only
    on (seed, start, i), never on batching or resuming."""
    out, grid, batch_size, info, done, scorer = start_job(
        sampler, out, scene=scene, count=count, seed=seed, start=start, grid=grid, batch_size=batch_size,
        workers=workers, resume=resume, overwrite=overwrite, argv=argv, fmt=fmt, drop_worst=drop_worst,
        mask_preview=mask_preview)
    workers = max(1, os.cpu_count() or 1) if workers is None else workers
    palette = flat_palette(sampler.entry.palette) if sampler.entry.has_masks else []
    t0 = time.perf_counter()
    written: set[int] = set()
    dropped: list[int] = []
    bar = tqdm(total=count, initial=len(done), unit="sample", file=sys.stderr, disable=quiet,
               dynamic_ncols=True, desc="sample")
    # spawn, not fork: forking a process whose inference threads are running can deadlock the child.
    # workers=0 encodes on one thread of this process instead.
    pool = None
    pending = set()
    shards = ShardBuffer(start, count, done)
    try:
        pool = ThreadPoolExecutor(1) if workers == 0 else encoder_pool(workers)
        for idx, images, masks in (batch for block in todo_blocks(start, count, done)
                                   for batch in sampler.iter_batches(indices=block, seed=seed, batch_size=batch_size,
                                                                     grid=grid)):
            gone = np.zeros(0, np.int64)
            if scorer is not None:
                keep = scorer.scores(images) <= info["drop_worst"]["threshold"]
                gone = idx[~keep]
                dropped += gone.tolist()
                bar.update(len(gone))
                idx, images, masks = idx[keep], images[keep], None if masks is None else masks[keep]
            units = ([(idx, images, masks)] if len(idx) else []) if fmt == "png" else \
                shards.add(idx, images, masks, gone)
            for unit in units:
                pending.add(pool.submit(write_unit, out.location, fmt, *unit, palette, compress_level, mask_preview))
            while len(pending) >= 2 * max(1, workers):
                pending = _collect(pending, written, bar, FIRST_COMPLETED)
        pending = _collect(pending, written, bar, None)
    except KeyboardInterrupt:
        _stop(pool)
        finish_job(out, seed, sampler, fmt)
        raise Interrupted(len(complete_indices(out, fmt))) from None
    except OSError as e:
        _stop(pool)
        try:
            finish_job(out, seed, sampler, fmt)
        except OSError:
            pass  # the disk is still full; --resume rebuilds metadata.jsonl from the complete files
        complete = len(complete_indices(out, fmt))
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise UserError(f"{out.label}: {reason} while writing; {complete} samples are complete "
                        "(free space, then run again with --resume)") from None
    finally:
        _stop(pool)
        bar.close()
    finish_job(out, seed, sampler, fmt)
    elapsed = time.perf_counter() - t0
    return {"out": out.label, "written": len(written), "skipped": len(done),
            "dropped": len(dropped),
            "seconds": round(elapsed, 3), "samples_per_s": round(len(written) / elapsed, 2) if written else 0.0,
            "batch_size": batch_size, "workers": workers, **{k: info[k] for k in ("grid", "size", "precision", "seed")}}


def _stop(pool) -> None:
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def quality_scorer(sampler: Sampler) -> Scorer:
    entry = sampler.entry
    if "quality.json" not in entry.config.files:
        raise UserError(f"{entry.root}: this entry has no quality reference (quality.json), so --drop-worst cannot "
                        "score samples; re-export it from its trainer run with `zoo export`")
    return Scorer.load(safe_member(entry.root, "quality.json", entry.within))


def calibrate(sampler: Sampler, scorer: Scorer, *, seed: int, start: int, count: int, grid, batch_size: int,
              fraction: float) -> dict:
    pool = np.arange(start, start + min(count, CALIBRATION))
    scores = np.concatenate([scorer.scores(images) for _, images, _ in
                             sampler.iter_batches(indices=pool, seed=seed, batch_size=batch_size, grid=grid)])
    return {"fraction": fraction, "score": SCORE, "threshold": drop_threshold(scores, fraction),
            "calibration_indices": [int(pool[0]), int(pool[-1]) + 1]}


def _collect(pending, written, bar, mode):
    done, pending = wait(pending, return_when=mode or "ALL_COMPLETED")
    for f in done:
        indices = f.result()  # re-raises a worker's OSError (disk full) here
        written.update(indices)
        bar.update(len(indices))
    return pending


def finish_job(out: Output, seed: int, sampler: Sampler, fmt: str) -> None:
    """After the last sample (local or Ray, interrupted or not): the PNG folder's metadata.jsonl."""
    if fmt == "png":
        write_metadata(out.path, complete_indices(out), seed, sampler.entry.has_masks)


def todo_blocks(start: int, count: int, done: set[int], block: int = 1 << 16):
    """The indices still to sample, in order, a block at a time: planning a billion samples costs nothing."""
    finished = np.sort(np.fromiter(done, np.int64, len(done)))
    for lo in range(start, start + count, block):
        hi = min(lo + block, start + count)
        idx = np.arange(lo, hi, dtype=np.int64)
        skip = finished[np.searchsorted(finished, lo):np.searchsorted(finished, hi)]
        if len(skip):
            idx = idx[~np.isin(idx, skip)]
        if len(idx):
            yield idx


class ShardBuffer:
    """Collects batches into shards of SHARD_SIZE absolute indices; yields each shard once it is whole."""

    def __init__(self, start: int, count: int, done: set[int]):
        self.start, self.end, self.done = start, start + count, done
        self.expected: dict[int, int] = {}
        self.parts: dict[int, list] = {}

    def _expect(self, s: int) -> int:
        """Samples of shard s this job writes (created on first use, then counted down for dropped ones)."""
        if s not in self.expected:
            lo, hi = max(self.start, s * SHARD_SIZE), min(self.end, (s + 1) * SHARD_SIZE)
            self.expected[s] = hi - lo - sum(1 for i in range(lo, hi) if i in self.done)
        return self.expected[s]

    def add(self, idx, images, masks, dropped=()):
        """Take a batch (and the indices dropped from it, which will never arrive); yield completed shards."""
        for s in (np.asarray(dropped, np.int64) // SHARD_SIZE).tolist():
            self.expected[s] = self._expect(s) - 1
        sid = idx // SHARD_SIZE
        for s in np.unique(sid).tolist():
            sel = sid == s
            self.parts.setdefault(s, []).append((idx[sel], images[sel], None if masks is None else masks[sel]))
        for s in set(np.unique(sid).tolist()) | set((np.asarray(dropped, np.int64) // SHARD_SIZE).tolist()):
            if s in self.parts and sum(len(p[0]) for p in self.parts[s]) == self._expect(s):
                parts = self.parts.pop(s)
                yield (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                       None if parts[0][2] is None else np.concatenate([p[2] for p in parts]))


def auto_batch(size: tuple[int, int]) -> int:
    """About 0.5 M output pixels per batch: large enough for the GEMMs, small enough for the cache."""
    return int(max(1, min(64, 500_000 // (size[0] * size[1]))))
