"""Where a `runtime sample` job writes: a local folder, or, for the shard formats, any URI fsspec understands
(`s3://bucket/prefix` with s3fs installed, `gs://` with gcsfs, `az://` with adlfs, `file://`, ...).

Every file lands whole or not at all: on a local file system by a temp name and a rename, on an object store by
one PUT (an object appears complete or not at all), elsewhere (sftp, hdfs, ...) by a temp name and the file
system's move. Credentials are fsspec's: environment variables or the provider's config files, on every node
that writes.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

from zoo import files
from zoo.errors import UserError

# a PUT creates the whole object or none; "memory" is fsspec's in-process store, used by the tests
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "memory"})


def is_uri(out: str | Path) -> bool:
    return isinstance(out, str) and "://" in out


class Output:
    """A job's output folder. Names are relative and use "/" (`shards/000000000-000000255.tar`)."""

    def __init__(self, out: str | Path):
        from fsspec.implementations.local import LocalFileSystem

        self.label = str(out)   # what the user gave, for messages and for the processes that write
        if is_uri(out):
            self.fs, self.root = _filesystem(out)
        else:
            self.fs, self.root = LocalFileSystem(), os.path.abspath(out)
        self.local = isinstance(self.fs, LocalFileSystem)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.atomic_put = not self.local and protocol in OBJECT_STORES

    @property
    def location(self) -> str:
        """What a process elsewhere (an encoder, a Ray actor with another working folder) opens: the absolute
        folder, or the URI."""
        return self.root if self.local else self.label

    @property
    def path(self) -> Path:
        """The local folder (PNG folders are local only)."""
        assert self.local
        return Path(self.root)

    def _join(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}" if name else self.root

    def is_dir(self, name: str = "") -> bool:
        return self.fs.isdir(self._join(name))

    def is_file(self, name: str = "") -> bool:
        return self.fs.isfile(self._join(name))

    def names(self, name: str = "") -> list[str]:
        """The entries of a folder ([] if it does not exist); a store's cached listing is refreshed first."""
        path = self._join(name)
        if self.local:
            return os.listdir(path) if os.path.isdir(path) else []
        self.fs.invalidate_cache(path)
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(self._join(name))

    def write(self, name: str, data: bytes) -> None:
        path = self._join(name)
        if self.local:
            files.atomic_write(Path(path), data, durable=False)   # samples: resumed from the files that are whole
        elif self.atomic_put:
            self.fs.pipe_file(path, data)
        else:
            folder, _, base = path.rpartition("/")
            tmp = f"{folder}/.{base}.{uuid.uuid4().hex[:8]}.tmp"   # the name --resume cleans up (zoo.files')
            try:
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, path)
            except BaseException:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
                raise

    def remove(self, name: str) -> None:
        """A file or a whole folder, if there."""
        path = self._join(name)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=self.fs.isdir(path))

    def makedirs(self, name: str = "") -> None:
        self.fs.makedirs(self._join(name), exist_ok=True)

    def writable(self) -> bool:
        return os.access(self.root, os.W_OK) if self.local else True   # a store says so at the first write


def _filesystem(uri: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as e:   # "Install s3fs to access S3"
        raise UserError(f"{uri}: {str(e).strip().splitlines()[0]}") from None
    except ValueError as e:   # "Protocol not known: ..."
        raise UserError(f"{uri}: not a URI fsspec understands ({e})") from None


@functools.lru_cache(maxsize=8)
def output_of(location: str) -> Output:
    """The Output for a location, made once per process (the encoders and the Ray actors get locations)."""
    return Output(location)
