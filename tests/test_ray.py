"""Sampling on Ray (a local instance, 2 CPUs): the same samples and the same files as the local job."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install 'oneshot-gan[ray]')")

from runtime.cli import main as runtime_cli  # noqa: E402
from runtime.job import sample_to_folder  # noqa: E402
from runtime.ray import sample_dataset, sample_to_folder_on_ray  # noqa: E402
from runtime.sampler import Sampler  # noqa: E402
from zoo.entry import Entry  # noqa: E402

# Ray Data copies its DataContext through __setattr__, which warns about its own deprecated fields; a user's CLI
# never shows DeprecationWarnings of a library, pytest does (then the one-line-error checks see extra lines)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(folder):
    """Every file's bytes, dataset.json without the command line that made it."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "dataset.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "command"}).encode()
            out[p.relative_to(folder).as_posix()] = data
    return out


def test_a_dataset_of_samples_is_the_local_sampler_s(entry):
    ds = sample_dataset(str(entry), 10, seed=3, start=5, actors=2, batch_size=3)
    rows = sorted(ds.take_all(), key=lambda r: r["index"])
    images, masks = Sampler(Entry.load(entry)).sample(indices=np.arange(5, 15), seed=3)
    assert [r["index"] for r in rows] == list(range(5, 15))
    assert np.array_equal(np.stack([r["image"] for r in rows]), images)
    assert np.array_equal(np.stack([r["mask"] for r in rows]), masks)


@pytest.mark.parametrize("fmt", ["png", "webdataset", "npz"])
def test_the_cluster_writes_the_bytes_the_local_job_writes(entry, tmp_path, fmt):
    sampler = Sampler(Entry.load(entry))
    job = dict(scene="s", count=300, seed=1, start=200, batch_size=7, fmt=fmt, quiet=True, argv=[])
    sample_to_folder(sampler, tmp_path / "local", **job)
    # shards may go to a URI every node can write to (runtime.output); file:// is the one every machine has
    out = tmp_path / "ray" if fmt == "png" else f"file://{tmp_path}/ray"
    sample_to_folder_on_ray(sampler, out, actors=2, **job)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def test_resume_on_the_cluster_finishes_only_what_is_missing(entry, tmp_path):
    out = tmp_path / "o"
    args = ["sample", str(entry), "--out", str(out), "--count", "30", "--batch-size", "4", "-q"]
    assert CliRunner().invoke(runtime_cli, args).exit_code == 0
    full = _files(out)
    for i in (0, 7, 8, 29):   # as if the job had been killed before these were written
        (out / f"images/{i:09d}.png").unlink()
    before = {p: (out / p).stat().st_mtime_ns for p in full if p.startswith("images/") and (out / p).exists()}
    res = CliRunner().invoke(runtime_cli, args + ["--ray", "--actors", "2", "--resume", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["written"] == 4 and summary["skipped"] == 26
    assert _files(out) == full
    assert all((out / p).stat().st_mtime_ns == t for p, t in before.items())   # nothing else rewritten


def test_ray_options_and_addresses_are_one_line_errors(entry, tmp_path):
    base = ["sample", str(entry), "--out", str(tmp_path / "o"), "--count", "2", "-q"]
    for args, message in ((["--actors", "2"], "go with --ray"), (["--gpus-per-actor", "1"], "go with --ray"),
                          (["--ray", "--gpus-per-actor", "1"], "each actor needs 1 GPU(s) and the Ray cluster has 0"),
                          (["--ray", "--drop-worst", "0.1"], "not available"),
                          (["--ray", "--start-scale", "1"], "needs a SinGAN entry"),
                          (["--ray", "--address", "nonsense"], "HOST:PORT"),
                          (["--ray", "--address", "127.0.0.1:1"], "nothing answers")):
        res = CliRunner().invoke(runtime_cli, base + args)
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output


def test_singan_entries_on_the_cluster_with_and_without_start_scale(tmp_path):
    from test_singan import tiny_singan_run
    from zoo.cli import main as zoo_cli

    entry = tmp_path / "entry"
    res = CliRunner().invoke(zoo_cli, ["export", str(tiny_singan_run(tmp_path)), "--out", str(entry), "--precision",
                                       "fp32", "-q"])
    assert res.exit_code == 0, res.output
    for extra in ([], ["--start-scale", "1"]):
        base = ["sample", str(entry), "--count", "5", "--format", "npz", "-q", *extra]
        local, cluster = tmp_path / f"local{len(extra)}", tmp_path / f"ray{len(extra)}"
        assert CliRunner().invoke(runtime_cli, base + ["--out", str(local), "--workers", "0"]).exit_code == 0
        res = CliRunner().invoke(runtime_cli, base + ["--out", str(cluster), "--ray", "--actors", "2"])
        assert res.exit_code == 0, res.output
        assert _files(cluster) == _files(local)
    assert json.loads((cluster / "dataset.json").read_text())["start_scale"] == 1
    assert not np.array_equal(*(np.load(next((tmp_path / f"{d}" / "shards").iterdir()))["images"]
                                for d in ("local0", "local2")))   # --start-scale reached the actors' samplers
    rows = sample_dataset(str(entry), 5, start_scale=1).take_all()
    shard = np.load(next((local / "shards").iterdir()))
    assert np.array_equal(np.stack([r["image"] for r in sorted(rows, key=lambda r: r["index"])]), shard["images"])


def test_zoo_build_runs_each_scene_as_a_ray_task(tmp_path):
    from test_build import manifest, write_scene
    from zoo.cli import main as zoo_cli

    write_scene(tmp_path / "field")
    path = manifest(tmp_path, [{"name": "field", "image": "field/scene.png", "mask": "field/mask.png"},
                               {"name": "broken", "image": "field/mask.png", "mask": "field/scene.png"}])
    out = tmp_path / "entries"
    res = CliRunner().invoke(zoo_cli, ["build", str(path), "--out", str(out), "--ray"])
    assert res.exit_code == 1, res.output
    assert "field: queued" in res.output and "field: finished" in res.output and "broken: failed:" in res.output
    index = json.loads((out / "index.json").read_text())
    assert list(index["scenes"]) == ["field"] and index["scenes"]["field"]["path"] == "field"
    assert ray.is_initialized()   # the caller's Ray session is left as it was


def test_a_killed_driver_leaves_whole_files_and_resume_finishes_the_job(entry, tmp_path):
    """kill -9 of `runtime sample --ray` (a second driver on this Ray instance): Ray ends the job's actors, the
    folder holds whole samples (and perhaps the temp file of a write cut short), and --resume writes the rest:
    the folder is then the local job's, byte for byte."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from runtime.job import complete_indices

    args = ["sample", str(entry), "--count", "600", "--seed", "2", "--batch-size", "2", "-q"]
    out = tmp_path / "killed"
    cli = Path(sys.executable).with_name("runtime")
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen([str(cli), *args, "--out", str(out), "--ray", "--address", address, "--actors", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while len(complete_indices(out, "png")) < 40 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    listing, quiet_since = None, time.monotonic()
    while time.monotonic() - quiet_since < 3:   # until the dead job's actors are gone (no file comes or goes)
        now = sorted(p.name for p in out.rglob("*"))
        if now != listing:
            listing, quiet_since = now, time.monotonic()
        time.sleep(0.2)
    done = complete_indices(out, "png")
    assert 0 < len(done) < 600
    res = CliRunner().invoke(runtime_cli, [*args, "--out", str(out), "--ray", "--actors", "2", "--resume", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["written"] == 600 - len(done) and summary["skipped"] == len(done)
    assert CliRunner().invoke(runtime_cli, [*args, "--out", str(tmp_path / "local"), "--workers", "1"]).exit_code == 0
    assert _files(out) == _files(tmp_path / "local")
