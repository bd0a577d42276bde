"""Sampling on a two-node Ray cluster (ray.cluster_utils.Cluster, one CPU per node) that loses a node mid-job."""

import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install 'oneshot-gan[ray]')")

from runtime.job import complete_indices, sample_to_folder  # noqa: E402
from runtime.ray import sample_to_folder_on_ray  # noqa: E402
from runtime.sampler import Sampler  # noqa: E402
from test_ray import _files  # noqa: E402
from zoo.entry import Entry  # noqa: E402
from zoo.errors import UserError  # noqa: E402


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def test_a_lost_node_then_resume_gives_the_local_job_s_files(entry, tmp_path, cluster):
    sampler = Sampler(Entry.load(entry))
    job = dict(scene="s", count=600, seed=2, batch_size=2, fmt="png", quiet=True, argv=[])
    sample_to_folder(sampler, tmp_path / "local", **job)
    out = tmp_path / "ray"
    worker = cluster.list_all_nodes()[1]

    def remove_worker_node_mid_job():
        while len(complete_indices(out, "png")) < 60:
            time.sleep(0.05)
        cluster.remove_node(worker)

    remover = threading.Thread(target=remove_worker_node_mid_job, daemon=True)
    remover.start()
    try:   # Ray may finish on the head node alone, or give up: either way only complete samples are there
        sample_to_folder_on_ray(sampler, out, actors=2, **job)
    except UserError as e:
        assert "finish with --resume" in str(e)
    remover.join(timeout=60)
    assert not remover.is_alive() and len(ray.nodes()) == 2 and sum(n["Alive"] for n in ray.nodes()) == 1
    done = complete_indices(out, "png")
    assert done and done <= set(range(600))
    summary = sample_to_folder_on_ray(sampler, out, actors=1, resume=True, **job)
    assert summary["written"] == 600 - len(done) and summary["skipped"] == len(done)
    assert _files(out) == _files(tmp_path / "local")
