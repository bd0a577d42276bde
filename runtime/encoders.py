"""What the encoder processes of a `runtime sample` job run (and the Ray actors, which write through here too).

Kept apart from runtime.job so that an encoder process imports only the writers (numpy, Pillow), not the sampler
and onnxruntime: spawning one cost 0.25 s of CPU instead of 0.14 (coins: up to 1 ms per sample of a short job).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from .output import output_of
from .webdataset import shard_bytes
from .writer import SHARD_EXT, encode_batch, npz_bytes, shard_name


def write_unit(out: str, fmt: str, indices, images, masks, palette: list[int], compress_level: int,
               mask_preview: bool) -> list[int]:
    """Runs in an encoder (or a Ray actor): one unit of the output, a batch of PNG pairs or one whole shard, each
    file landing whole; returns its indices. The local and the Ray jobs both write through here."""
    output = output_of(out)
    if fmt == "png":
        return encode_batch(str(output.path), indices, images, masks, palette, compress_level, mask_preview)
    data = (shard_bytes(indices, images, masks, palette, compress_level) if fmt == "webdataset" else
            npz_bytes(indices, images, masks))
    output.write(f"shards/{shard_name(indices)}{SHARD_EXT[fmt]}", data)
    return [int(i) for i in indices]


def encoder_pool(workers: int) -> ProcessPoolExecutor:
    """The encoder processes, all started now, with SIGINT ignored. A terminal's Ctrl-C goes to the whole process
    group and this process stops the pool itself; an encoder that saw it printed a KeyboardInterrupt traceback,
    even while still importing. SIG_IGN set before the fork survives the exec, and Python then installs no
    KeyboardInterrupt handler, so the encoders never see it. (A Ctrl-C in the few milliseconds of the forks is
    lost: press it again.)"""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=watch_parent, initargs=(os.getpid(),))
    if threading.current_thread() is not threading.main_thread():   # signal.signal works only there
        return pool
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(workers):   # each submit starts one more process while none is idle
            pool.submit(int)
    finally:
        signal.signal(signal.SIGINT, previous)
    return pool


def watch_parent(parent: int, every: float = 0.5) -> None:
    """Runs in each encoder process: exit as soon as the parent is gone. After a kill -9 (or the OOM killer)
    of `runtime sample`, encoders otherwise lived on for minutes, holding the caller's stdout pipe open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # already so when started by encoder_pool; kept for any other
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()
