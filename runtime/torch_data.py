"""A torch IterableDataset over generated samples (torch is imported only when the class is first used).

    from runtime.torch_data import SampleDataset
    ds = SampleDataset("coins", start=0, count=10_000, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=4)

The index range is cut into blocks of `block` indices; block k goes to shard k % (ranks x workers), so the
union over all DataLoader workers and distributed ranks is exactly the range, each sample once, whatever the
worker count. Each worker opens its own inference session on first use. Items are dicts with `index`,
`image` (uint8, 3 x H x W) and `mask` (int64 class ids, H x W).
"""

from __future__ import annotations

_CLASSES: dict = {}


def _make_class():
    import numpy as np
    import torch

    from .sampler import Sampler

    class SampleDataset(torch.utils.data.IterableDataset):
        def __init__(self, scene=None, start: int = 0, count: int = 1000, seed: int = 0, block: int = 16,
                     grid=None, precision: str = "fp32", threads: int | None = 1, rank: int | None = None,
                     world_size: int | None = None):
            super().__init__()
            self.scene, self.start, self.count, self.seed, self.block = scene, start, count, seed, block
            self.grid, self.precision, self.threads = grid, precision, threads
            self.rank, self.world_size = rank, world_size
            self._sampler = None

        def _shard(self) -> tuple[int, int]:
            rank, world = self.rank, self.world_size
            if rank is None or world is None:
                dist = torch.distributed
                ready = dist.is_available() and dist.is_initialized()
                rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
            info = torch.utils.data.get_worker_info()
            wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
            return rank * workers + wid, world * workers

        def block_indices(self, shard: int, shards: int):
            end = self.start + self.count
            for k, first in enumerate(range(self.start, end, self.block)):
                if k % shards == shard:
                    yield np.arange(first, min(first + self.block, end))

        def __iter__(self):
            if self._sampler is None:  # created lazily, inside the worker process
                self._sampler = Sampler.from_pretrained(self.scene, precision=self.precision, threads=self.threads)
            grid = self._sampler.grid_for(self.grid)
            for idx in self.block_indices(*self._shard()):
                images, masks = self._sampler.run(idx, self.seed, grid)
                for k, index in enumerate(idx):
                    item = {"index": int(index), "image": torch.from_numpy(images[k]).permute(2, 0, 1)}
                    if masks is not None:
                        item["mask"] = torch.from_numpy(masks[k].astype(np.int64))
                    yield item

        def __len__(self) -> int:
            return self.count

        def __getstate__(self):
            state = dict(self.__dict__)
            state["_sampler"] = None  # sessions are not shared across processes
            return state

    SampleDataset.__module__, SampleDataset.__qualname__ = __name__, "SampleDataset"  # picklable by name
    return SampleDataset


def __getattr__(name: str):
    if name == "SampleDataset":
        if name not in _CLASSES:
            _CLASSES[name] = _make_class()
        return _CLASSES[name]
    raise AttributeError(name)
