"""The collapse guard: its detector on synthetic collapses and on a healthy tiny run, rollbacks, the final stop,
and zoo export's refusal of a collapsed run."""

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from trainer.checkpoint import guard_state, list_checkpoints, read_metadata
from trainer.cli import main
from trainer.health import Probe
from zoo.cli import main as zoo_cli

from conftest import scene_arrays

TINY = ["--max-size", "40", "--width", "0.125", "--batch-size", "2", "-q"]


class Stub(torch.nn.Module):
    """A 'generator' with a fixed output per latent batch: images (N, 3, H, W) in [-1, 1], mask logits."""

    def __init__(self, images, logits):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.images, self.logits = images, logits

    def forward(self, z):
        return SimpleNamespace(images=[self.images], mask_logits=self.logits)


def probe():
    img, mask = scene_arrays()
    return Probe(img[None], mask[None], 3, 64, seed=0)


def test_detector_flags_synthetic_collapses():
    p = probe()
    n, h, w = 8, 48, 80
    flat = Stub(torch.full((n, 3, h, w), 0.999), torch.tensor([0.0, 9, 0]).view(1, 3, 1, 1).expand(n, 3, h, w))
    s = p.measure(flat, d_fake=0.001)
    assert s["diversity"] == 0 and s["saturated"] > 0.9 and s["class_share"] == [0, 1, 0]
    assert p.problems(s, masks_settled=True) == ["identical samples", "saturated colours", "D rejects every fake",
                                                 "missing class 0,2"]
    assert p.problems(s, masks_settled=False) == ["identical samples", "saturated colours", "D rejects every fake"]
    # diverse images and masks with every class in every sample: nothing to report
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, (n, h, w), generator=g)
    healthy = Stub(torch.rand(n, 3, h, w, generator=g) * 1.6 - 0.8,
                   torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float() * 5)
    s = p.measure(healthy, d_fake=0.6)
    assert s["diversity"] > 0.5 and s["class_presence"] == [1, 1, 1]
    assert p.problems(s, masks_settled=True) == []


def test_measuring_leaves_the_generator_untouched(run_dir):
    from trainer.run import Run

    G, _ = Run.open(run_dir).ema_generator()
    G.train()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    probe().measure(G, d_fake=0.5)
    assert G.training and all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def _fit(scene, out, *args):
    img, mask = scene
    return CliRunner().invoke(main, ["fit", str(img), "--mask", str(mask), "--out", str(out), *TINY, *args])


def _lines(run):
    return [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]


def test_healthy_tiny_run_reports_no_problem(scene, tmp_path):
    out = tmp_path / "run"
    res = _fit(scene, out, "--iters", "200", "--check-every", "20", "--save-every", "200")
    assert res.exit_code == 0, res.output
    checks = [ln["health"] for ln in _lines(out) if "health" in ln]
    assert [c["iter"] for c in checks] == list(range(20, 201, 20))
    # no collapse: never three problem checks in a row (a transient one may happen in so small a model),
    # nothing rolled back, the last check clean, samples never identical
    assert not any("event" in ln for ln in _lines(out))
    flags = "".join("x" if c["problems"] else "." for c in checks)
    assert "xxx" not in flags and flags.endswith("."), checks
    assert min(c["diversity"] for c in checks) > 0.05
    assert guard_state(list_checkpoints(out / "checkpoints")[-1])["last"]["iter"] == 200


def _sabotage(monkeypatch, when):
    """From iteration 5 on, while when(trainer) holds, every latent gives the same first-layer map: a collapse."""
    from trainer.train import Trainer

    original = Trainer.fit

    def fit(self, quiet=False, on_step=None):
        def hook(t):
            if t.iteration >= 5 and when(t):
                with torch.no_grad():
                    t.G.first_linear.weight.zero_()
        return original(self, quiet=quiet, on_step=hook)

    monkeypatch.setattr(Trainer, "fit", fit)


GUARDED = ["--check-every", "2", "--save-every", "2", "--bernoulli-warmup", "100", "--log-every", "1", "--lr", "2e-4"]


def test_collapse_rolls_back_and_training_goes_on(scene, tmp_path, monkeypatch):
    _sabotage(monkeypatch, lambda t: t.guard.rollbacks == 0)
    out = tmp_path / "run"
    res = _fit(scene, out, "--iters", "14", *GUARDED)
    assert res.exit_code == 0, res.output
    lines = _lines(out)
    events = [ln for ln in lines if "event" in ln]
    # problems at 6, 8 and 10 (patience 3): back to the newest healthy checkpoint before the onset, iteration 4
    assert len(events) == 1 and events[0]["event"] == "rollback"
    assert (events[0]["iter"], events[0]["collapsed_at"], events[0]["onset"]) == (4, 10, 6)
    assert events[0]["problems"] == ["identical samples"] and events[0]["lr_g"] == 1e-4
    assert [ln["iter"] for ln in lines if "event" not in ln] == list(range(1, 15))  # no iteration twice
    assert sorted(p.name for p in (out / "checkpoints" / "collapsed-1").iterdir()) == \
        ["ckpt-000000006.safetensors", "ckpt-000000008.safetensors"]
    last = list_checkpoints(out / "checkpoints")[-1]
    assert last.name == "ckpt-000000014.safetensors"
    groups = json.loads(read_metadata(last)["opt_G"])["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-4)  # halved after the rollback
    state = guard_state(last)
    assert state["rollbacks"] == 1 and state["last"]["problems"] == []


def test_persistent_collapse_stops_with_one_line_and_export_refuses(scene, tmp_path, monkeypatch):
    _sabotage(monkeypatch, lambda t: True)
    out = tmp_path / "run"
    res = _fit(scene, out, "--iters", "40", *GUARDED)
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and res.output.startswith("error: ")
    assert "training collapsed at iteration 10 (identical samples) after 2 rollback(s)" in res.output
    events = [ln["event"] for ln in _lines(out) if "event" in ln]
    assert events == ["rollback", "rollback", "collapse"]
    assert (out / "checkpoints" / "collapsed-2").is_dir()
    entry = tmp_path / "entry"
    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(entry), "-q"])
    assert res.exit_code == 1 and "last health check (iteration 10) failed: identical samples" in res.output
    assert "--force" in res.output and not entry.exists()
    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(entry), "--force", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((entry / "config.json").read_text())["training"]["health"]["problems"] == ["identical samples"]


def test_no_guard_only_reports(scene, tmp_path, monkeypatch):
    _sabotage(monkeypatch, lambda t: True)
    out = tmp_path / "run"
    res = _fit(scene, out, "--iters", "12", "--no-guard", *GUARDED)
    assert res.exit_code == 0, res.output
    lines = _lines(out)
    assert not any("event" in ln for ln in lines)
    assert [ln["health"]["problems"] for ln in lines if "health" in ln][-1] == ["identical samples"]
    assert not (out / "checkpoints" / "collapsed-1").exists()


def test_resume_after_a_rollback_is_exact(scene, tmp_path, monkeypatch):
    _sabotage(monkeypatch, lambda t: t.guard.rollbacks == 0)
    straight, split = tmp_path / "straight", tmp_path / "split"
    fixed = ["--ema-decay", "0.9", *GUARDED]  # the EMA horizon would otherwise follow --iters
    assert _fit(scene, straight, "--iters", "16", *fixed).exit_code == 0
    assert _fit(scene, split, "--iters", "12", *fixed).exit_code == 0
    res = CliRunner().invoke(main, ["resume", str(split), "--iters", "16", "-q"])
    assert res.exit_code == 0, res.output
    a = load_file(str(list_checkpoints(straight / "checkpoints")[-1]))
    b = load_file(str(list_checkpoints(split / "checkpoints")[-1]))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    strip = lambda lines: [{k: v for k, v in x.items() if k != "time"} for x in lines]  # noqa: E731
    assert strip(_lines(straight)) == strip(_lines(split))


def test_a_stopped_run_resumes_only_with_the_guard_relaxed(scene, tmp_path, monkeypatch):
    _sabotage(monkeypatch, lambda t: True)
    out = tmp_path / "run"
    assert _fit(scene, out, "--iters", "40", "--max-rollbacks", "0", *GUARDED).exit_code == 1
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "14", "-q"])
    assert res.exit_code == 1 and "training collapsed at iteration 11" in res.output  # the same verdict at once
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "14", "--no-guard", "-q"])
    assert res.exit_code == 0, res.output
    assert list_checkpoints(out / "checkpoints")[-1].name == "ckpt-000000014.safetensors"
    assert json.loads((out / "config.json").read_text())["train"]["guard"] is False
