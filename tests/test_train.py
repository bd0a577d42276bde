import json
import os
import signal

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from trainer.checkpoint import list_checkpoints
from trainer.cli import main

TINY = ["--max-size", "40", "--width", "0.125", "--batch-size", "2", "-q"]


def fit(args):
    return CliRunner().invoke(main, ["fit", *args], catch_exceptions=False)


def test_fit_end_to_end_writes_a_complete_run(scene, tmp_path):
    img, mask = scene
    out = tmp_path / "run"
    res = fit([str(img), "--mask", str(mask), "--out", str(out), "--iters", "6", "--save-every", "3",
               "--preview-every", "3", "--log-every", "1", "--keep", "1", *TINY])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 3 and cfg["model"]["height"] == 24 and cfg["model"]["width"] == 40
    assert cfg["train"]["bernoulli_warmup"] == 1  # 15,000 scaled to 6 iterations
    assert cfg["data"]["palette"][1] == [230, 30, 30] and cfg["data"]["class_names"][0] == "background"
    assert set(cfg["data"]["fingerprint"]) == {"scene.png", "mask.png"} and "torch" in cfg["versions"]
    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt-000000006.safetensors"]  # --keep 1
    tensors = load_file(str(ckpts[0]))
    for prefix in ("G.", "D.", "G_ema.", "opt_G.", "opt_D.", "rng."):
        assert any(k.startswith(prefix) for k in tensors), prefix
    lines = [json.loads(ln) for ln in (out / "losses.jsonl").read_text().splitlines()]
    assert [ln["iter"] for ln in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(ln["G"]) and np.isfinite(ln["D_real"]) for ln in lines)
    grid = Image.open(out / "preview.png")
    assert grid.size[0] > 2 * 2 * 40  # two (image | mask) pairs per row
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["preview-000000003.png", "preview-000000006.png"]
    assert not list(out.rglob("*.tmp"))


def _weights(run):
    return load_file(str(list_checkpoints(run / "checkpoints")[-1]))


def _losses(run):
    return [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]


def test_resume_is_exact(scene, tmp_path):
    img, mask = scene
    common = [str(img), "--mask", str(mask), "--save-every", "100", "--preview-every", "100", "--log-every", "1",
              "--seed", "3", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    # warm-up ends inside the run so that both mask modes are exercised across the interruption
    assert fit([*common, "--out", str(straight), "--iters", "7", "--bernoulli-warmup", "2"]).exit_code == 0
    assert fit([*common, "--out", str(split), "--iters", "4", "--bernoulli-warmup", "2"]).exit_code == 0
    res = CliRunner().invoke(main, ["resume", str(split), "--iters", "7", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = _losses(straight), _losses(split)
    assert [{k: v for k, v in x.items() if k != "time"} for x in la] == \
           [{k: v for k, v in x.items() if k != "time"} for x in lb]


def test_ctrl_c_saves_and_resume_finishes(scene, tmp_path, monkeypatch):
    from trainer.train import Trainer

    img, mask = scene
    out = tmp_path / "run"
    original = Trainer.fit

    def fit_with_interrupt(self, quiet=False, on_step=None):
        def interrupt(trainer):
            if trainer.iteration == 3:
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, quiet=quiet, on_step=interrupt)

    monkeypatch.setattr(Trainer, "fit", fit_with_interrupt)
    res = CliRunner().invoke(main, ["fit", str(img), "--mask", str(mask), "--out", str(out), "--iters", "50",
                                    "--save-every", "100", *TINY])
    assert res.exit_code == 130
    assert "checkpoint saved at iteration 3" in res.output
    # the initial state (the guard's rollback target until a healthy checkpoint exists) and the interrupted one
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["ckpt-000000000.safetensors",
                                                                       "ckpt-000000003.safetensors"]
    monkeypatch.setattr(Trainer, "fit", original)
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "5", "-q"])
    assert res.exit_code == 0, res.output
    assert list_checkpoints(out / "checkpoints")[-1].name == "ckpt-000000005.safetensors"


def test_fit_without_masks_and_bf16(scene, tmp_path):
    img, mask = scene
    out = tmp_path / "run"
    res = fit([str(img), "--mask", str(mask), "--no-masks", "--precision", "bf16", "--out", str(out),
               "--iters", "2", *TINY])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 0 and cfg["train"]["precision"] == "bf16"
    assert not any(k.startswith("G.mask_converter") for k in _weights(out))
    # an image-only entry samples images only: no masks/ folder, no mask column
    from runtime.cli import main as runtime_cli
    from zoo.cli import main as zoo_cli

    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(tmp_path / "entry"), "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "entry/training/mask-000.png").exists() and (tmp_path / "entry/training/frame-000.png").exists()
    res = CliRunner().invoke(runtime_cli, ["sample", str(tmp_path / "entry"), "--count", "2", "--out",
                                           str(tmp_path / "s"), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["dataset.json", "images", "metadata.jsonl"]


def test_fit_with_a_binary_mask_writes_its_palette(tmp_path):
    """Black/white masks have no palette of their own: the default palette must reach config.json as ints."""
    from conftest import scene_arrays

    img, mask = scene_arrays()
    Image.fromarray(img).save(tmp_path / "scene.png")
    Image.fromarray(((mask > 0) * 255).astype(np.uint8), "L").save(tmp_path / "mask.png")
    out = tmp_path / "run"
    res = fit([str(tmp_path / "scene.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(out), "--iters", "1",
               *TINY])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["mask_encoding"] == "binary" and cfg["data"]["palette"] == [[0, 0, 0], [128, 0, 0]]


def test_cpu_defaults_are_the_documented_recipe(scene, tmp_path):
    img, mask = scene
    out = tmp_path / "run"
    res = fit([str(img), "--mask", str(mask), "--out", str(out), "--iters", "1", "--batch-size", "2", "--device",
               "cpu", "-q"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    from trainer.config import RECIPES

    assert RECIPES[True] == {"max_size": 112, "width": 0.5, "iters": 4500, "lr": 1e-4, "save_every": 500,
                             "preview_every": 500}
    assert cfg["model"]["width_mult"] == 0.5 and cfg["train"]["lr_g"] == cfg["train"]["lr_d"] == 1e-4
    assert (cfg["train"]["save_every"], cfg["train"]["preview_every"]) == (500, 500)
    assert (cfg["train"]["lambda_freq"], cfg["train"]["ceiling"], cfg["train"]["floor"]) == (0.25, 4.0, 0.3)
    assert cfg["train"]["mask_resize"] == "area" and cfg["train"]["mask_grad"] == "protect"


def test_resuming_a_run_from_before_issue_11_keeps_its_training(scene, tmp_path):
    """Runs that did not record the class-frequency prior, the activation bounds and the MCA mask resizing
    were trained without them; a resume must not switch them on."""
    img, mask = scene
    out = tmp_path / "run"
    assert fit([str(img), "--mask", str(mask), "--out", str(out), "--iters", "2", "--log-every", "1", *TINY]).exit_code == 0
    cfg = json.loads((out / "config.json").read_text())
    for key in ("lambda_freq", "mask_grad", "ceiling", "floor", "mask_resize", "check_every", "guard", "max_rollbacks"):
        del cfg["train"][key]
    (out / "config.json").write_text(json.dumps(cfg))
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "4", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [ln["bounds"] for ln in _losses(out)][2:] == [0, 0]  # no activation bounds after the resume
    from trainer.config import TrainConfig

    old = TrainConfig.from_dict(cfg["train"])
    assert (old.lambda_freq, old.ceiling, old.floor, old.mask_resize) == (0.0, 0.0, 0.0, "nearest")
    assert old.mask_grad == "softmax"
    assert old.guard and old.check_every == 100  # the guard itself is new for everyone
    cfg["train"]["mask_grad"] = "top2"  # an experiment of an earlier version, removed again
    (out / "config.json").write_text(json.dumps(cfg))
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "6", "-q"])
    assert res.exit_code == 1 and "mask_grad 'top2' is no longer supported" in res.output, res.output
    assert "Traceback" not in res.output


def test_one_corrupt_file_does_not_block_a_run(scene, tmp_path):
    """A truncated latest checkpoint, a torn last log line or an empty data.safetensors once ended `trainer
    resume` / `zoo export` in a traceback (issue 12, medium 8)."""
    from zoo.cli import main as zoo

    img, mask = scene
    run = tmp_path / "run"
    assert fit([str(img), "--mask", str(mask), "--out", str(run), "--iters", "4", "--save-every", "2",
                "--log-every", "1", *TINY]).exit_code == 0
    newest = list_checkpoints(run / "checkpoints")[-1]
    intact = newest.read_bytes()
    newest.write_bytes(intact[: len(intact) // 2])                   # a crash or a full disk while saving
    with open(run / "losses.jsonl", "a") as f:
        f.write('{"iter": 5, "time": 0.1, "G"')                      # the process died mid-line
    res = CliRunner().invoke(main, ["resume", str(run), "--iters", "6", "-q"])
    assert res.exit_code == 0, res.output
    assert "ckpt-000000004.safetensors: unreadable" in res.output and "falling back" in res.output
    assert [ln["iter"] for ln in _losses(run)] == [1, 2, 3, 4, 5, 6]  # resumed at 2, torn line dropped
    assert list_checkpoints(run / "checkpoints")[-1].name == "ckpt-000000006.safetensors"
    res = CliRunner().invoke(main, ["resume", str(run), "--iters", "3"])
    assert res.exit_code == 1 and "below the iteration the run is at (6)" in res.output
    assert json.loads((run / "config.json").read_text())["train"]["iters"] == 6
    (run / "checkpoints" / "ckpt-000000006.safetensors").write_bytes(b"")
    res = CliRunner().invoke(zoo, ["export", str(run), "--out", str(tmp_path / "e"), "--precision", "fp32", "-q"])
    assert res.exit_code == 0, res.output                            # exports iteration 4 (the one before)
    assert json.loads((tmp_path / "e/config.json").read_text())["training"]["iterations"] == 4
    (run / "data.safetensors").write_bytes(b"")
    for cli, args in ((main, ["resume", str(run), "--iters", "8"]),
                      (zoo, ["export", str(run), "--out", str(tmp_path / "f")])):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and "data.safetensors: unreadable" in res.output, res.output
        assert res.output.count("\n") == 1 + res.output.count("warning")


def test_a_full_disk_keeps_the_iterations_so_far(scene, tmp_path, monkeypatch):
    """A full disk once lost every iteration since the last checkpoint, with a traceback (issue 12, medium 11)."""
    import errno

    from trainer.train import Trainer

    real = Trainer.write_preview

    def full(self):
        if self.iteration == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self)

    monkeypatch.setattr(Trainer, "write_preview", full)
    img, mask = scene
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["fit", str(img), "--mask", str(mask), "--out", str(run), "--iters", "6",
                                    "--save-every", "100", "--preview-every", "3", *TINY])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "No space left on device while writing the run (saved a checkpoint at iteration 3)" in res.output
    assert list_checkpoints(run / "checkpoints")[-1].name == "ckpt-000000003.safetensors"
    monkeypatch.setattr(Trainer, "write_preview", real)
    res = CliRunner().invoke(main, ["resume", str(run), "-q"])
    assert res.exit_code == 0 and list_checkpoints(run / "checkpoints")[-1].name == "ckpt-000000006.safetensors"


def test_a_read_only_run_folder_is_one_line(scene, tmp_path, monkeypatch):
    """--out on a read-only filesystem ended in a traceback (issue 12, medium 11); root ignores chmod, so the
    filesystem's answer is simulated."""
    import errno

    import trainer.train

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(trainer.train, "write_run", read_only)
    img, mask = scene
    res = CliRunner().invoke(main, ["fit", str(img), "--mask", str(mask), "--out", str(tmp_path / "run"),
                                    "--iters", "2", *TINY])
    assert res.exit_code == 1 and "cannot write the run folder (Read-only file system)" in res.output, res.output


def test_a_rare_class_trains_through_the_protected_gradient_with_a_host_share(tmp_path, monkeypatch):
    """`protect` spares a class under 3 % of the training pixels; the trainer hands straight_through a host copy
    of the class shares so that the per-step rare-class test never waits for a GPU."""
    import trainer.train as train
    from conftest import save_palette_mask, scene_arrays

    img, mask = scene_arrays()
    mask[mask == 2] = 0
    mask[2:6, 2:6] = 2  # 16 of 3,840 pixels: 0.4 %
    Image.fromarray(img).save(tmp_path / "scene.png")
    save_palette_mask(tmp_path / "mask.png", mask)
    shares, protected = [], []
    real_st, real_apply = train.straight_through, train._ProtectedGrad.apply
    monkeypatch.setattr(train, "straight_through", lambda *a, **k: shares.append(a[3]) or real_st(*a, **k))
    monkeypatch.setattr(train._ProtectedGrad, "apply", lambda *a: protected.append(1) or real_apply(*a))
    res = fit([str(tmp_path / "scene.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "run"),
               "--iters", "2", *TINY])
    assert res.exit_code == 0, res.output
    assert len(shares) == len(protected) == 2 and all(s.device.type == "cpu" for s in shares)
    assert float(shares[0][2]) < train.RARE
