"""The library API: sample images and class-id masks from a scene entry with onnxruntime (no torch).

    from runtime import Sampler
    s = Sampler.from_pretrained("coins")                  # or "org/repo@revision", or an entry folder
    images, masks = s.sample(count=16, seed=0)          # (16, H, W, 3) uint8, (16, H, W) uint8
    for indices, images, masks in s.iter_batches(0, 1000, seed=0): ...

One onnxruntime session is shared; `sample` may be called from several threads at once.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterator

import numpy as np

from zoo.entry import Entry, safe_member
from zoo.entry_config import ONNX_FILES
from zoo.errors import UserError
from zoo.files import sha256_file
from zoo.hub import Hub
from zoo.index import load_index
from zoo.scenes import ResolvedScene, resolve
from zoo.sessions import CPU, open_session

from .latents import MAPS_SCHEME, SCHEME, latent_grid, latent_maps, latent_vectors, map_sizes

__all__ = ["BaseSampler", "Sampler", "load_backend", "find_scene", "BACKENDS"]

RECONSTRUCTION = "reconstruction.safetensors"   # SinGAN entries: the fixed noise that reconstructs the training image
BACKENDS = "oneshot_gan.backends"  # entry-point group of the torch-side sampling backends
PROVIDERS = {"cpu": CPU, "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# Every model run holds exactly this many latents (the last run of a batch padded with zeros). onnxruntime's
# kernels give slightly different values for other batch shapes (a 1-sample run differed by 1 in some pixels
# from the same sample in a run of 4), and a sample never depends on the others in its run, so one shape
# makes sample i the same bytes whatever the batch size, worker count or resume.
MICRO_BATCH = {"cpu": 4, "cuda": 32, "tensorrt": 32}


def checked_hash(entry: Entry, precision: str) -> str:
    """The sha256 of the ONNX file that will run, which must be the one config.json lists (a local entry is
    not checked anywhere else; hashing even a reference-width model takes a fraction of a second)."""
    path = entry.onnx_path(precision)
    want, got = entry.config.files[ONNX_FILES[precision]].sha256, sha256_file(path)
    if got != want:
        raise UserError(f"{path}: fails its sha256 check (config.json lists {str(want)[:12]}..., the file is "
                        f"{got[:12]}...): the model was changed after export; export it again")
    return got


def input_names(entry: Entry) -> list[str]:
    """One-shot entries take z; SinGAN entries one noise map per scale, z0 (coarsest) .. zK."""
    return [f"z{n}" for n in range(len(entry.map_sizes))] if entry.arch == "singan" else ["z"]


def _check_io(session, entry: Entry, path: Path) -> None:
    """The model's input and outputs are what config.json says (a mismatch would fail later, mid-job)."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    names = input_names(entry)
    if sorted(inputs) != sorted(names) or any(len(inputs[n]) != 4 or inputs[n][1] != entry.noise_dim for n in names):
        raise UserError(f"{path}: the model takes {inputs}, but config.json says {', '.join(names)} of "
                        f"{entry.noise_dim} channels")
    if "image" not in outputs or entry.has_masks != ("mask" in outputs):
        raise UserError(f"{path}: the model's outputs {sorted(outputs)} do not match config.json "
                        f"({'image and mask' if entry.has_masks else 'image only'})")


def fixed_runs(z: np.ndarray, size: int) -> list[np.ndarray]:
    """z split into runs of exactly `size` latents, the last one padded with zeros."""
    pad = -len(z) % size
    if pad:
        z = np.concatenate([z, np.zeros((pad, *z.shape[1:]), z.dtype)])
    return np.split(z, len(z) // size)


def find_scene(scene=None, index: str | None = None, hub: Hub | None = None) -> ResolvedScene:
    """Resolve a scene id through the zoo (pulling a Hub scene into the cache the first time)."""
    hub = hub or Hub.from_env()
    return resolve(None if scene is None else str(scene), hub, load_index(index, hub))


class BaseSampler:
    """What every sampling backend shares: grids, the latent scheme, batching. A backend implements run() (a batch
    of sample indices -> uint8 images and class-id masks) and describe(); backends other than onnxruntime live on
    the torch side and register under the entry-point group BACKENDS (load_backend)."""

    backend = ""
    device = ""
    scene: ResolvedScene | None = None   # where the entry came from, when made by from_pretrained

    def __init__(self, entry: Entry, precision: str = "fp32", *, model_sha256: str | None = None):
        """model_sha256: of the file the samples come from, for backends that run another file than the
        precision's ONNX (the torch backend: model.safetensors); by default that ONNX, checked against config.json."""
        self.entry, self.precision = entry, precision
        self.model_sha256 = model_sha256 or checked_hash(entry, precision)

    @classmethod
    def from_pretrained(cls, scene: str | os.PathLike | None = None, *, index: str | None = None,
                        hub: Hub | None = None, backend: str | None = None, **kwargs) -> "BaseSampler":
        """A bundled name, an index name, `org/repo[@revision]` (pulled once, then from the cache) or a folder.
        `hub` (zoo.hub.Hub) sets endpoint, token, cache and offline mode [from the environment]; `backend`
        (torch, tensorrt) picks a sampler the exporter registers [this class]."""
        found = find_scene(scene, index, hub)
        sampler = (load_backend(backend) if backend else cls)(found.entry, **kwargs)
        sampler.scene = found
        return sampler

    # -- grids ---------------------------------------------------------------------------------------------
    def grid_for(self, grid: tuple[int, int] | None = None, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The latent grid for a requested grid or output size (trained grid by default), within bounds."""
        ppc = self.entry.pixels_per_cell
        if size is not None:
            if size[0] % ppc or size[1] % ppc:
                raise UserError(f"size {size[0]}x{size[1]} is not reachable: sides must be multiples of {ppc} "
                                f"(grid x {ppc})")
            grid = (size[0] // ppc, size[1] // ppc)
        grid = tuple(grid or self.entry.trained_grid)
        (lo_h, lo_w), (hi_h, hi_w) = self.entry.grid_bounds
        if not (lo_h <= grid[0] <= hi_h and lo_w <= grid[1] <= hi_w):
            raise UserError(f"grid {grid[0]}x{grid[1]} is outside this model's bounds "
                            f"{lo_h}x{lo_w} .. {hi_h}x{hi_w}")
        return grid

    def output_size(self, grid: tuple[int, int]) -> tuple[int, int]:
        return grid[0] * self.entry.pixels_per_cell, grid[1] * self.entry.pixels_per_cell

    # -- sampling ------------------------------------------------------------------------------------------
    def sample(self, indices=None, *, count: int | None = None, seed: int = 0, start: int = 0,
               grid: tuple[int, int] | None = None, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
        """Images (N, H, W, 3) and masks (N, H, W) of the given indices, or of start .. start+count-1."""
        if indices is None:
            if count is None or count <= 0:
                raise UserError("give sample indices or a positive count")
            indices = np.arange(start, start + count)
        indices = np.asarray(indices, dtype=np.int64)
        grid = self.grid_for(grid)
        parts = [self.run(indices[i:i + batch_size], seed, grid) for i in range(0, len(indices), batch_size)]
        images = np.concatenate([p[0] for p in parts])
        masks = np.concatenate([p[1] for p in parts]) if parts[0][1] is not None else None
        return images, masks

    def iter_batches(self, start: int = 0, count: int = 1000, *, seed: int = 0, batch_size: int = 16,
                     grid: tuple[int, int] | None = None, indices=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yields (indices, images, masks) batches over start .. start+count-1 (or the given indices)."""
        grid = self.grid_for(grid)
        indices = np.arange(start, start + count) if indices is None else np.asarray(indices, dtype=np.int64)
        chunks = (indices[i:i + batch_size] for i in range(0, len(indices), batch_size))
        if self.batches_in_flight == 1:
            for idx in chunks:
                yield (idx, *self.run(idx, seed, grid))
            return
        # Leaving (a break, an error, Ctrl-C) waits for the batches in flight, so no run outlives the generator.
        with ThreadPoolExecutor(self.batches_in_flight, thread_name_prefix="batch") as pool:
            flight: deque = deque()
            for idx in chunks:
                flight.append((idx, pool.submit(self.run, idx, seed, grid)))
                if len(flight) == self.batches_in_flight:
                    idx, done = flight.popleft()
                    yield (idx, *done.result())
            while flight:
                idx, done = flight.popleft()
                yield (idx, *done.result())

    # Batches iter_batches computes at once. With one, the CPU sampler's lanes waited for the slowest of them at the
    # end of every batch and while the caller handed it on: 5-10 % of two cores idle (coins, docs/performance.md).
    # Backends whose run() is not thread-safe keep 1.
    batches_in_flight = 1

    @property
    def latent_scheme(self) -> str:
        return MAPS_SCHEME if self.entry.arch == "singan" else SCHEME

    def latents(self, indices: np.ndarray, seed: int, grid: tuple[int, int]) -> list[np.ndarray]:
        """The model inputs of these samples, in input_names order: each one's latent (the runtime's scheme) over
        the grid, or for SinGAN entries its noise maps for the output size `grid` (pixels_per_cell 1)."""
        if self.entry.arch == "singan":
            sizes = map_sizes(self.entry.map_sizes, grid)
            maps = latent_maps(seed, indices, [(self.entry.noise_dim, h, w) for h, w in sizes])
            return self._fixed_below(maps) if self.start_scale else maps
        return [latent_grid(latent_vectors(seed, indices, self.entry.noise_dim), grid)]

    start_scale = 0   # SinGAN: scales below it take the reconstruction noise (the paper's Fig. 8)

    def set_start_scale(self, n: int, grid: tuple[int, int]) -> None:
        """SinGAN entries: generate from scale n (0 = coarsest) with the training image's reconstruction noise
        below it, so the layout stays the training image's and finer scales vary (at the trained size only)."""
        if not n:
            self.start_scale = 0
            return
        if self.entry.arch != "singan" or not 0 < n < len(self.entry.map_sizes):
            raise UserError(f"--start-scale {n}: needs a SinGAN entry and a scale within 1 .. "
                            f"{max(0, len(self.entry.map_sizes) - 1)} (0 = all scales random)")
        if tuple(grid) != tuple(self.entry.trained_grid):
            raise UserError(f"--start-scale works at the trained size {self.entry.trained_grid[0]}x"
                            f"{self.entry.trained_grid[1]} (the reconstruction noise has that layout)")
        if RECONSTRUCTION not in self.entry.config.files:
            raise UserError(f"{self.entry.root}: no {RECONSTRUCTION} (exported before --start-scale existed)")
        path = safe_member(self.entry.root, RECONSTRUCTION, self.entry.within)
        if not path.is_file():
            raise UserError(f"{path}: missing (the entry is incomplete)")
        from safetensors.numpy import load_file

        try:
            z0 = load_file(str(path)).get("z0")
        except Exception as e:   # safetensors' own error types for a damaged file
            raise UserError(f"{path}: not readable ({str(e).splitlines()[0][:160]})") from None
        want = (1, self.entry.noise_dim, *self.entry.map_sizes[0])
        if z0 is None or z0.dtype != np.float32 or z0.shape != want:
            raise UserError(f"{path}: expected z0 float32 {want}")
        self.start_scale, self._z_rec = n, z0

    def _fixed_below(self, maps: list[np.ndarray]) -> list[np.ndarray]:
        fixed = [np.broadcast_to(self._z_rec, maps[0].shape)] + [np.zeros_like(m) for m in maps[1:self.start_scale]]
        return [np.ascontiguousarray(m) for m in fixed] + maps[self.start_scale:]

    def run(self, indices: np.ndarray, seed: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class Sampler(BaseSampler):
    """The onnxruntime backend (CPU, or CUDA / TensorRT providers with onnxruntime-gpu)."""

    backend = "onnxruntime"

    def __init__(self, entry: Entry, precision: str = "fp32", device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        super().__init__(entry, precision)
        path = entry.onnx_path(precision)
        available = ort.get_available_providers()
        auto = device == "auto"
        if auto:
            device = "cuda" if PROVIDERS["cuda"] in available else "cpu"
        if device not in PROVIDERS:
            raise UserError(f"--device must be auto, cpu, cuda or tensorrt, got {device}")
        wanted = PROVIDERS[device]
        if wanted not in available:
            raise UserError(f"{wanted} is not available in this onnxruntime (available: {', '.join(available)}); "
                            "install onnxruntime-gpu for cuda/tensorrt")
        # CPU: one single-threaded run per core on a slice of each batch beats one run split over the cores
        # (no barrier after every operator, and a core busy with PNG encoding stalls only its own slice)
        try:
            providers = (wanted,) + ((CPU,) if wanted != CPU else ())
            self.session = open_session(path, providers=providers, threads=threads or (1 if device == "cpu" else 0))
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise UserError(f"{path}: cannot load the model ({str(e).splitlines()[0][:200]})") from None
        if auto and device != "cpu" and self.session.get_providers()[0] != wanted:  # no GPU after all
            self.session = open_session(path, threads=threads or 1)
            device, wanted = "cpu", PROVIDERS["cpu"]
        if self.session.get_providers()[0] != wanted:
            raise UserError(f"{wanted} did not come up for {path} (got {self.session.get_providers()}); "
                            "refusing to fall back to another device silently")
        self.device = device
        _check_io(self.session, entry, path)
        self.outputs = [o.name for o in self.session.get_outputs() if o.name in ("image", "mask")]
        self.lanes = (os.cpu_count() or 1) if device == "cpu" and not threads else 1
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="ort-lane") if self.lanes > 1 else None
        self.batches_in_flight = 2 if self.lanes > 1 else 1   # session.run is thread-safe

    def run(self, indices: np.ndarray, seed: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        names = input_names(self.entry)
        runs = list(zip(*(fixed_runs(z, MICRO_BATCH[self.device]) for z in self.latents(indices, seed, grid))))
        one = lambda part: self.session.run(self.outputs, dict(zip(names, part)))  # noqa: E731
        parts = list(self._pool.map(one, runs)) if self._pool is not None and len(runs) > 1 else [one(r) for r in runs]
        out = [np.concatenate([p[k] for p in parts])[:len(indices)] for k in range(len(self.outputs))]
        return out[0], (out[1] if len(out) > 1 else None)

    def describe(self) -> dict:
        return {"latent_scheme": self.latent_scheme, "precision": self.precision, "device": self.device,
                "providers": self.session.get_providers()}


def load_backend(name: str) -> type[BaseSampler]:
    """The sampler class of a backend: onnxruntime here, the others (tensorrt, torch) from the packages that
    register them under BACKENDS, imported only now."""
    if name in ("auto", Sampler.backend):
        return Sampler
    found = [ep for ep in entry_points(group=BACKENDS) if ep.name == name]
    if not found:
        raise UserError(f"no sampling backend {name!r} is installed (pip install 'oneshot-gan[tensorrt]' for tensorrt)")
    try:
        return found[0].load()
    except ImportError as e:
        raise UserError(f"--backend {name} needs the exporter and its libraries ({e})") from None
