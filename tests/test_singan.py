"""SinGAN (trainer/singan.py, trainer/singan_train.py) at tiny sizes: the pyramid, the losses, masks through the
scales, exact resume, and `trainer fit --arch singan`."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from trainer.config import TrainConfig
from trainer.losses import reconstruction, wgan_gp_discriminator
from trainer.singan import (SinGAN, SinGANConfig, from_channels, pyramid_sizes, real_pyramid, scale_channels,
                            to_channels)
from trainer.singan_train import SinGANTrainer


def test_the_paper_s_pyramid_at_250_px():
    sizes = pyramid_sizes(188, 250)
    assert sizes[-1] == (188, 250) and sizes[0][0] == 25   # the shorter side 25 px at the coarsest scale
    ratios = [b[0] / a[0] for a, b in zip(sizes, sizes[1:])]
    assert len(sizes) == 8 and all(1.30 < r < 1.37 for r in ratios)   # 4/3, landing exactly on 188
    assert scale_channels(len(sizes)) == [32, 32, 32, 32, 64, 64, 64, 64]   # doubled every 4 scales
    assert scale_channels(12)[-1] == 128
    model = SinGAN(SinGANConfig(tuple(sizes), 0))
    convs = [m for m in model.gens[0].modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [32, 32, 32, 32, 3]
    with pytest.raises(Exception, match="at least 25 px"):
        pyramid_sizes(20, 250)


def test_describe_lists_the_scales():
    from trainer.cli import main

    res = CliRunner().invoke(main, ["describe", "--size", "375x500", "--classes", "3", "--arch", "singan", "--json"])
    info = json.loads(res.output)
    assert info["training_size"] == [188, 250] and info["channels"] == 6 and len(info["scales"]) == 8
    first = info["scales"][0]   # 5 convs of 3x3: 6->32, 3 x 32->32, 32->6, with biases and 4 BatchNorms
    assert first["g_params"] == (6 * 32 + 3 * 32 * 32 + 32 * 6) * 9 + 4 * 32 + 6 + 4 * 2 * 32
    assert first["g_macs"] == 25 * 33 * (6 * 32 + 3 * 32 * 32 + 32 * 6) * 9


def test_wgan_gp_and_reconstruction_on_hand_made_tensors():
    class Linear(torch.nn.Module):   # one patch score per pixel: the sum of 2 x over the 2 channels
        def forward(self, x):
            return 2 * x.sum(1, keepdim=True)

    real, fake = torch.full((1, 2, 2, 2), 0.5), torch.full((1, 2, 2, 2), -0.5)
    loss, stats = wgan_gp_discriminator(Linear(), real, fake, 0.1)
    grad_norm = (2 ** 2 + 2 ** 2) ** 0.5   # d sum / d x = 2 for both channels of each pixel: norm sqrt(8)
    assert stats["D_real"] == pytest.approx(2.0) and stats["D_fake"] == pytest.approx(-2.0)
    assert stats["GP"] == pytest.approx((grad_norm - 1) ** 2)
    assert float(loss) == pytest.approx(-2.0 - 2.0 + 0.1 * (grad_norm - 1) ** 2)
    assert float(reconstruction(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))) == pytest.approx(1.0)


def test_masks_stay_aligned_through_the_scales():
    ids = torch.zeros(1, 60, 80, dtype=torch.long)
    ids[:, 20:40, 10:50] = 1
    ids[:, 45:, 60:] = 2
    image = torch.zeros(1, 3, 60, 80)
    x = to_channels(image, ids, 3)
    assert x.shape == (1, 6, 60, 80) and x[:, 3:].min() == -1 and x[:, 3:].max() == 1
    sizes = pyramid_sizes(60, 80)
    for level, size in zip(real_pyramid(x, sizes, 3), sizes):
        _, mask = from_channels(level, 3)
        expected = F.interpolate(F.one_hot(ids, 3).permute(0, 3, 1, 2).float(), size=size, mode="area").argmax(1)
        assert torch.equal(mask, expected)
        assert float((mask == 1).float().mean()) == pytest.approx(float((ids == 1).float().mean()), abs=0.03)


def _scene():
    rng = np.random.default_rng(0)
    image = (rng.random((1, 3, 30, 40), dtype=np.float32) * 2 - 1)
    mask = np.zeros((1, 30, 40), np.uint8)
    mask[:, 10:20] = 1
    mask[:, 24:, 5:12] = 2
    return image, mask


def _states(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resume_in_the_middle_of_a_scale_is_exact(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    image, mask = _scene()
    cfg = SinGANConfig.for_size(30, 40, 3)
    assert len(cfg.sizes) == 2
    tc = TrainConfig(iters=3, save_every=100, device="cpu", keep=2)
    full = SinGANTrainer(tmp_path / "a", cfg, tc, image, mask)
    assert full.fit(quiet=True) and full.iteration == 6

    part = SinGANTrainer(tmp_path / "b", cfg, tc, image, mask)
    real_step = SinGANTrainer.step

    def stop_after_four(self):
        out = real_step(self)
        self.stop_requested = self.iteration == 4   # scale 1, step 1: mid-scale
        return out

    monkeypatch.setattr(SinGANTrainer, "step", stop_after_four)
    assert not part.fit(quiet=True)
    monkeypatch.setattr(SinGANTrainer, "step", real_step)
    resumed = SinGANTrainer(tmp_path / "b", cfg, tc, image, mask)
    assert resumed.restore_latest() == 4 and resumed.scale == 1
    assert resumed.fit(quiet=True)
    a, b = _states(full), _states(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(resumed.model.noise_amp[1]) > 0


def tiny_singan_run(tmp_path):
    """`trainer fit --arch singan` on a 30x40 two-class scene, 2 iterations per scale (2 scales): the run folder."""
    from trainer.cli import main

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[12:] = 1
    Image.fromarray(mask * 255).save(tmp_path / "mask.png")
    out = tmp_path / "run"
    args = ["fit", str(tmp_path / "scene.png"), "--mask", str(tmp_path / "mask.png"), "--arch", "singan",
            "--iters", "2", "--device", "cpu", "--out", str(out), "-q"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return out


def test_trainer_fit_arch_singan(tmp_path):
    from trainer.cli import main

    out = tiny_singan_run(tmp_path)
    base = ["fit", str(tmp_path / "scene.png"), "--arch", "singan", "--out", str(tmp_path / "x"), "-q"]
    for args, message in ((["--batch-size", "4", "--width", "0.5"], "--batch-size, --width: not options of --arch"),
                          (["--no-guard"], "--guard: not options of --arch singan"),
                          (["--precision", "bf16"], "trains in fp32")):
        res = CliRunner().invoke(main, base + args)
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "x").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "singan" and config["model"]["num_classes"] == 2
    assert config["model"]["sizes"][-1] == [30, 40]
    assert (out / "preview.png").is_file() and len(list((out / "previews").iterdir())) == 2
    res = CliRunner().invoke(main, ["resume", str(out), "--no-guard", "-q"])
    assert res.exit_code == 1 and "has no collapse guard" in res.output, res.output
    res = CliRunner().invoke(main, ["resume", str(out), "--iters", "3", "-q"])
    assert res.exit_code == 0, res.output
    last = json.loads((out / "losses.jsonl").read_text().splitlines()[-1])
    assert last["iter"] == 5 and last["scale"] == 1   # scale 0 stays as trained; scale 1 gets a third step
    res = CliRunner().invoke(main, ["eval", str(out), "--samples", "4", "--unet-steps", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["mask_alignment"]["miou"] >= 0 and "pixel_diversity" in json.dumps(result)
    from zoo.cli import main as zoo_cli

    entry = tmp_path / "entry"
    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(entry), "--probabilities"])
    assert res.exit_code == 1 and "not available for SinGAN" in res.output, res.output
    assert not entry.exists()
    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(entry), "--checkpoint", "--precision", "int8",
                                       "--precision", "fp16"])
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(main, ["resume", str(entry / "checkpoint"), "-q"]).exit_code == 0   # others resume
    config = json.loads((entry / "config.json").read_text())
    assert config["files"]["onnx/generator.int8.onnx"]["quality_vs_fp32"]["mask_agreement"] >= 0.97
    fp16 = config["files"]["onnx/generator.fp16.onnx"]["quality_vs_fp32"]   # fp16 arithmetic inside, on the CPU
    assert fp16["mask_agreement"] >= 0.99 and fp16["mean_pixel_delta"] <= 1, fp16
    assert CliRunner().invoke(zoo_cli, ["verify", str(entry)]).exit_code == 0
    _samples_of_the_entry_are_the_run_s(out, entry, tmp_path)


def _samples_of_the_entry_are_the_run_s(run_dir, entry, tmp_path):
    """`runtime sample` on the exported entry: the run's PyTorch samples (same latent scheme) within the export's
    parity, at any batch size, and other output sizes through --size."""
    from runtime.cli import main as runtime_cli
    from trainer.run import Run
    from trainer.singan import sample_uint8

    images, masks = sample_uint8(Run.open(run_dir).singan()[0], np.arange(5, 12), seed=3)
    got = {}
    for batch in ("1", "4"):
        out = tmp_path / f"samples{batch}"
        res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--count", "7", "--start-index", "5", "--seed",
                                               "3", "--batch-size", batch, "--format", "npz", "--out", str(out),
                                               "--workers", "0", "-q"])
        assert res.exit_code == 0, res.output
        shard = np.load(next((out / "shards").iterdir()))
        got[batch] = shard
        assert json.loads((out / "dataset.json").read_text())["latent_scheme"] == "per-sample-maps-v1"
    assert np.array_equal(got["1"]["images"], got["4"]["images"]) and np.array_equal(got["1"]["masks"],
                                                                                      got["4"]["masks"])
    assert np.abs(got["1"]["images"].astype(int) - images).max() <= 1
    assert (got["1"]["masks"] == masks).mean() >= 0.999
    res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--count", "2", "--size", "36x60", "--format", "npz",
                                           "--out", str(tmp_path / "wide"), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    assert np.load(next((tmp_path / "wide" / "shards").iterdir()))["images"].shape == (2, 36, 60, 3)

    # --start-scale 1: scale 0 takes the reconstruction noise, so every sample keeps one coarse layout
    res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--count", "6", "--start-scale", "1", "--format",
                                           "npz", "--out", str(tmp_path / "fixed"), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    fixed = np.load(next((tmp_path / "fixed" / "shards").iterdir()))["images"].astype(float)
    free = np.load(next((tmp_path / "samples1" / "shards").iterdir()))["images"].astype(float)
    assert fixed.std(0).mean() < free.std(0).mean()   # less variation across samples than from scale 0
    assert json.loads((tmp_path / "fixed" / "dataset.json").read_text())["start_scale"] == 1
    (entry / "reconstruction.safetensors").write_bytes(b"damaged")
    for args, message in ((["--start-scale", "2"], "within 1 .. 1"), (["--start-scale", "1", "--size", "36x60"],
                                                                          "trained size"),
                          (["--start-scale", "1"], "reconstruction.safetensors: not readable")):
        res = CliRunner().invoke(runtime_cli, ["sample", str(entry), "--count", "2", "--out", str(tmp_path / "x"),
                                               "-q", *args])
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output


def test_noise_maps_of_a_sample_do_not_depend_on_the_batch():
    from runtime.latents import latent_maps, map_sizes

    shapes = [(6, 5, 7), (6, 7, 9), (6, 10, 12)]
    together = latent_maps(3, [4, 9, 2], shapes)
    alone = [latent_maps(3, [i], shapes) for i in (4, 9, 2)]
    for k in range(3):
        assert together[k].shape == (3, *shapes[k])
        assert all(np.array_equal(together[k][row], alone[row][k][0]) for row in range(3))
    assert not np.array_equal(latent_maps(4, [4], shapes)[0], together[0][:1])   # the seed matters
    assert map_sizes([(25, 33), (30, 40)], (30, 40)) == [(25, 33), (30, 40)]
    assert map_sizes([(25, 33), (30, 40)], (60, 40)) == [(50, 33), (60, 40)]


def test_export_matches_pytorch_at_several_output_sizes(tmp_path):
    from export.onnx_export import check_model
    from export.singan_onnx import input_names, parity, to_onnx_bytes

    torch.manual_seed(0)
    cfg = SinGANConfig.for_size(30, 40, 3)
    model = SinGAN(cfg)
    model.noise_amp[1] = 0.2
    for m in model.modules():   # BatchNorm statistics other than the initial ones, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    data = to_onnx_bytes(model)
    proto = check_model(data, "test")   # full checker, strict shape inference
    assert [i.name for i in proto.graph.input] == input_names(model) == ["z0", "z1"]
    report = parity(model, data, "test", sizes=[(30, 40), (24, 56), (45, 30)])
    assert report["worst"]["max_pixel_delta"] <= 1 and report["worst"]["mask_agreement"] >= 0.999
    assert {tuple(c["size"]) for c in report["checks"]} == {(30, 40), (24, 56), (45, 30)}


def test_a_singan_entry_config_is_checked(tmp_path):
    from trainer.cli import main
    from zoo.cli import main as zoo_cli
    from zoo.entry_config import EntryConfig
    from zoo.errors import UserError

    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    out, entry = tmp_path / "run", tmp_path / "entry"
    assert CliRunner().invoke(main, ["fit", str(tmp_path / "scene.png"), "--arch", "singan", "--iters", "1",
                                     "--device", "cpu", "--out", str(out), "-q"]).exit_code == 0
    res = CliRunner().invoke(zoo_cli, ["export", str(out), "--out", str(entry)])
    assert res.exit_code == 0, res.output
    good = json.loads((entry / "config.json").read_text())
    assert good["model"]["arch"] == "singan" and good["latent"]["map_sizes"] == [[25, 33], [30, 40]]
    assert EntryConfig.from_dict(good, where="x").map_sizes == ((25, 33), (30, 40))
    for change, message in ((lambda c: c["latent"].update(map_sizes=[[25, 33]]), "the last the trained size"),
                            (lambda c: c["latent"].update(scheme="chunked-v1"), "per-sample-maps-v1"),
                            (lambda c: c["latent"].update(map_sizes=[[0, 3], [30, 40]]), "map_sizes"),
                            (lambda c: c["model"].update(arch="diffusion"), "unknown model.arch")):
        bad = json.loads(json.dumps(good))
        change(bad)
        with pytest.raises(UserError, match=message):
            EntryConfig.from_dict(bad, where="x")
