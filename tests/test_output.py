"""Sample outputs at URIs (runtime.output): the shard formats written to a store through fsspec are the local
job's bytes, resume from the store's listing, and bad URIs are one-line errors. The store here is fsspec's
in-process memory file system (the CLI runs in this process, and --workers 0 encodes on a thread of it)."""

import json

import fsspec
import numpy as np
import pytest
from click.testing import CliRunner

from runtime.cli import main
from runtime.output import Output
from runtime.sampler import Sampler
from runtime.webdataset import read_shards
from zoo.entry import Entry


@pytest.fixture
def store():
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/bucket"):
        fs.rm("/bucket", recursive=True)


def _local_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _store_files(fs, root):
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def _without_command(files):
    info = json.loads(files["dataset.json"])
    return {k: v for k, v in files.items() if k != "dataset.json"}, {k: v for k, v in info.items() if k != "command"}


@pytest.mark.parametrize("fmt", ["webdataset", "npz"])
def test_shards_at_a_uri_are_the_local_job_s_bytes_and_resume_from_the_listing(entry, tmp_path, store, fmt,
                                                                                 monkeypatch):
    from runtime import job
    from runtime.writer import SHARD_EXT

    monkeypatch.setattr(job, "SHARD_SIZE", 4)
    args = ["sample", str(entry), "--format", fmt, "--count", "10", "--start-index", "2", "--seed", "1",
            "--workers", "0", "-q"]
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "local")]).exit_code == 0
    res = CliRunner().invoke(main, [*args, "--out", "memory://bucket/run"])
    assert res.exit_code == 0, res.output
    local, remote = _local_files(tmp_path / "local"), _store_files(store, "/bucket/run")
    assert sorted(remote) == ["dataset.json", "shards/000000002-000000003" + SHARD_EXT[fmt],
                              "shards/000000004-000000007" + SHARD_EXT[fmt],
                              "shards/000000008-000000011" + SHARD_EXT[fmt]]
    assert _without_command(remote) == _without_command(local)

    lost = "/bucket/run/shards/000000004-000000007" + SHARD_EXT[fmt]
    store.rm(lost)   # as if the job had died before writing it; the store's cached listing is stale now
    res = CliRunner().invoke(main, [*args, "--out", "memory://bucket/run", "--resume", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["written"] == 4
    assert _store_files(store, "/bucket/run") == remote
    assert CliRunner().invoke(main, [*args, "--out", "memory://bucket/run"]).exit_code == 1   # not empty

    if fmt == "webdataset":   # users read the shards back from the URI
        items = list(read_shards(sorted(f"memory:/{p}" for p in store.find("/bucket/run/shards"))))
        images, masks = Sampler(Entry.load(entry)).sample(indices=range(2, 12), seed=1)
        assert [it["index"] for it in items] == list(range(2, 12))
        assert np.array_equal(np.stack([it["image"] for it in items]), images)
        assert np.array_equal(np.stack([it["mask"] for it in items]), masks)


def test_overwrite_at_a_uri_replaces_only_a_sample_folder(entry, store):
    store.pipe_file("/bucket/mine/notes.txt", b"keep me")
    args = ["sample", str(entry), "--format", "npz", "--count", "3", "--workers", "0", "-q", "--overwrite"]
    res = CliRunner().invoke(main, [*args, "--out", "memory://bucket/mine"])
    assert res.exit_code == 1 and "not a sample folder" in res.output
    assert store.cat_file("/bucket/mine/notes.txt") == b"keep me"
    for _ in range(2):
        assert CliRunner().invoke(main, [*args, "--out", "memory://bucket/run"]).exit_code == 0
    assert sorted(store.find("/bucket/run")) == ["/bucket/run/dataset.json",
                                                 "/bucket/run/shards/000000000-000000002.npz"]


def test_bad_uris_are_one_line_errors(entry, tmp_path):
    base = ["sample", str(entry), "--count", "2", "--workers", "0", "-q"]
    for args, message in ((["--format", "npz", "--out", "nosuchfs://b/x"], "not a URI fsspec understands"),
                          (["--out", "memory://bucket/png"], "write to a URI with --format webdataset or npz")):
        res = CliRunner().invoke(main, base + args)
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output


def test_a_missing_fsspec_backend_names_the_package(monkeypatch):
    from zoo.errors import UserError

    def no_s3fs(uri):   # what fsspec raises where s3fs is not installed (it may be here)
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_s3fs)
    with pytest.raises(UserError, match=r"^s3://b/x: Install s3fs to access S3$"):
        Output("s3://b/x")


def test_file_uris_write_locally_and_other_file_systems_by_a_temp_name(tmp_path, store, monkeypatch):
    out = Output(f"file://{tmp_path}/run")
    assert out.local and not out.atomic_put
    out.makedirs("shards")
    out.write("shards/a.npz", b"x")
    assert (tmp_path / "run/shards/a.npz").read_bytes() == b"x"

    other = Output("memory://bucket/other")
    other.atomic_put = False   # as for sftp or hdfs: a write lands by a temp name and a move
    moved = []
    real_mv = other.fs.mv
    monkeypatch.setattr(other.fs, "mv", lambda a, b: (moved.append(a.rsplit("/", 1)[-1]), real_mv(a, b)))
    other.write("shards/b.npz", b"y")
    assert store.cat_file("/bucket/other/shards/b.npz") == b"y" and store.find("/bucket/other") == [
        "/bucket/other/shards/b.npz"]
    assert moved and moved[0].startswith(".b.npz.") and moved[0].endswith(".tmp")

    def broken(a, b):
        raise OSError("connection lost")

    monkeypatch.setattr(other.fs, "mv", broken)
    with pytest.raises(OSError):
        other.write("shards/c.npz", b"z")
    assert store.find("/bucket/other") == ["/bucket/other/shards/b.npz"]   # no temp left behind
