"""Files every package writes or checks: atomic writes and content hashes (torch-free, the ground floor)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["UMASK", "atomic_write", "atomic_path", "sha256_file", "write_whole"]

UMASK = os.umask(0)  # read once: os.umask can only be read by setting it
os.umask(UMASK)


@contextlib.contextmanager
def atomic_path(path: Path, *, durable: bool = True):
    """Yields a temporary path beside `path` for the caller to write; on success the file gets the permissions of a
    normally created one and is renamed into place, on any error (Ctrl-C included) it is removed. durable: fsync
    before the rename, so a crash never leaves a renamed but empty file (off for bulk samples, where the cost
    shows and an interrupted job is resumed from the files that are complete)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates it private (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write bytes (or UTF-8 text) to `path` so that readers see the old file or the whole new one."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_whole(path: Path, data: bytes) -> None:
    """atomic_write for bulk outputs whose every name one process writes (the samples of a job): no fsync, and a
    temp name made of the process id instead of mkstemp's random one, so one open, one write and one rename
    (mkstemp, reopening and chmod doubled the time of writing a small PNG to a tmpfs: 0.18 against 0.09 ms). A temp
    file a killed writer left behind is the kind --resume removes; a later writer with the same id truncates it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:   # 0o666 less the umask, as any new file
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
