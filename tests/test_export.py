import json
import pickle
from argparse import Namespace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from export import onnx_export, quantize
from export.graph import ExportError
from trainer.run import Run
from export.onnx_export import cpu_session, latents
from zoo.cli import main as zoo_main


def test_entry_files_config_and_hashes(entry):
    cfg = json.loads((entry / "config.json").read_text())
    assert cfg["format"] == "oneshot-gan-entry/1"
    assert set(cfg["files"]) == {"onnx/generator.onnx", "onnx/generator.fp16.onnx", "model.safetensors", "preview.png",
                                "quality.json", "README.md", "training/frame-000.png", "training/mask-000.png"}
    import hashlib
    for name, info in cfg["files"].items():
        assert hashlib.sha256((entry / name).read_bytes()).hexdigest() == info["sha256"]
    assert cfg["latent"]["trained_grid"] == [3, 5] and cfg["latent"]["pixels_per_cell"] == 8
    assert cfg["outputs"]["image"]["layout"] == "NHWC"
    assert cfg["classes"]["names"] == ["background", "class_1", "class_2"]
    parity = cfg["files"]["onnx/generator.onnx"]["parity_vs_torch"]
    assert parity["max_pixel_delta"] <= 1 and parity["mask_agreement"] >= 0.999
    fp16 = cfg["files"]["onnx/generator.fp16.onnx"]["quality_vs_fp32"]
    assert fp16["mean_pixel_delta"] < 2.0 and fp16["mask_agreement"] > 0.9
    assert not list(entry.parent.glob(".*partial*"))
    modes = {(entry / name).stat().st_mode & 0o777 for name in cfg["files"]}
    assert len(modes) == 1   # model.safetensors was 0600 while the rest followed the umask
    from huggingface_hub import metadata_load

    card = metadata_load(entry / "README.md")
    assert card["pipeline_tag"] == "unconditional-image-generation" and card["library_name"] == "oneshot-gan"
    assert card["training_size"] == [24, 40] and card["classes"] == ["background", "class_1", "class_2"]
    assert card["training_image"] == "not recorded" and card["preview"] == "preview.png"


def test_the_preview_shows_the_first_samples_runtime_sample_writes(entry):
    """preview.png used to draw its own latents, so it showed none of the samples a user gets."""
    from runtime.sampler import Sampler
    from trainer.preview import preview_grid
    from zoo.entry import Entry

    sampler = Sampler(Entry.load(entry), device="cpu")
    images, masks = sampler.sample(indices=np.arange(8), seed=0)
    expected = preview_grid(images, masks, json.loads((entry / "config.json").read_text())["classes"]["palette"] or None)
    assert (entry / "preview.png").read_bytes() == expected


def test_onnx_is_self_contained_checked_and_dynamic(entry):
    data = (entry / "onnx/generator.onnx").read_bytes()
    model = onnx_export.check_model(data, "generator.onnx")
    assert model.opset_import[0].version == onnx_export.OPSET or any(o.version == onnx_export.OPSET for o in model.opset_import)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True] and dims[1].dim_value == 64
    assert [o.name for o in model.graph.output] == ["image", "mask"]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert not list((entry / "onnx").glob("*.data"))
    # upsampling convs in the phase form: 2x2 convs, each followed by a grouped 0/1 ConvTranspose
    transposed = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    groups = [next(a.i for a in n.attribute if a.name == "group") for n in transposed]
    blocks = json.loads((entry / "config.json").read_text())["model"]["g_blocks"]
    assert len(transposed) == blocks - 1 and all(g > 1 for g in groups)   # every block but the first upsamples
    assert len(quantize._head_convs(model)) == 1   # the RGB and mask heads are one conv (export.graph.merged_heads)


def test_parity_across_grids_and_batches(run_dir):
    G, _ = Run.open(run_dir).ema_generator()
    report = onnx_export.parity(G, onnx_export.to_onnx_bytes(G), "x")
    cases = {(tuple(c["grid"]), c["batch"]) for c in report["checks"]}
    assert len({g for g, _ in cases}) >= 3 and {b for _, b in cases} == {1, 2, 7}
    assert all(c["max_pixel_delta"] <= 1 and c["mask_agreement"] >= 0.999 for c in report["checks"])


def test_trained_grid_reproduces_the_trained_model(entry, run_dir):
    G, _ = Run.open(run_dir).ema_generator()
    z = np.random.default_rng(5).standard_normal((4, 64), dtype=np.float32)
    with torch.no_grad():
        out = G(torch.from_numpy(z))  # the training-time path: transposed-conv first layer, 1x1 latent
    ref_img = ((out.images[-1] + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    ref_mask = out.mask_logits.argmax(1).byte().numpy()
    image, mask = cpu_session(str(entry / "onnx/generator.onnx")).run(None, {"z": latents_from(z, (3, 5))})
    assert np.abs(image.astype(int) - ref_img).max() <= 1
    assert (mask == ref_mask).mean() >= 0.999


def latents_from(z, grid):
    return np.ascontiguousarray(np.broadcast_to(z[:, :, None, None], (*z.shape, *grid)))


def test_one_file_serves_every_grid(entry):
    sess = cpu_session(str(entry / "onnx/generator.onnx"))
    rng = np.random.default_rng(0)
    for grid in [(2, 2), (3, 5), (6, 12), (24, 40)]:
        image, mask = sess.run(None, {"z": latents(rng, 2, 64, grid)})
        assert image.shape == (2, grid[0] * 8, grid[1] * 8, 3) and mask.shape == image.shape[:3]
        assert image.dtype == np.uint8 and mask.max() < 3


def test_export_refuses_when_parity_fails(run_dir, tmp_path, monkeypatch):
    real = onnx_export.torch_outputs

    def off_by_two(G, z):
        image, mask = real(G, z)
        return [np.clip(image.astype(int) + 2, 0, 255).astype(np.uint8), mask]

    monkeypatch.setattr(onnx_export, "torch_outputs", off_by_two)
    out = tmp_path / "entry"
    res = CliRunner().invoke(zoo_main, ["export", str(run_dir), "--out", str(out), "--precision", "fp32"])
    assert res.exit_code == 1
    assert "differs from PyTorch" in res.output and "refusing" in res.output and str(out) in res.output
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_int8_quality_is_measured_and_enforced(run_dir, tmp_path, monkeypatch):
    G, _ = Run.open(run_dir).ema_generator()
    with torch.no_grad():  # a decisive mask head, as a trained model has; a 3-step one is near a tie everywhere
        G.mask_converter.weight.mul_(40)
    fp32 = onnx_export.to_onnx_bytes(G, upsampling="phases-nhwc")   # what the writer quantizes
    data, quality = quantize.int8_variant(fp32, quantize.grid_feed(64, (3, 5)), "x", has_masks=True,
                                          reference=onnx_export.to_onnx_bytes(G))
    assert quality["mask_agreement"] >= 0.97 and quality["mean_pixel_delta"] < 10
    qmodel = onnx.load_from_string(data)
    assert sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node) > 5
    assert "ConvTranspose" not in {n.op_type for n in qmodel.graph.node}   # every upsampling conv is quantized
    heads = quantize._head_convs(onnx.load_from_string(fp32))
    assert len(heads) == 1  # the final RGB and mask conv stays in float
    produced_by = {o: n for n in qmodel.graph.node for o in n.output}
    head = next(n for n in qmodel.graph.node if n.name == heads[0])
    assert head.input[1] not in produced_by   # its weights are a float initializer, not a DequantizeLinear
    # the phases' data movement is quantized: every interleaving Transpose reads a DequantizeLinear's output
    moves = [n for n in qmodel.graph.node if n.op_type == "Transpose" and len(n.input) == 1
             and produced_by.get(n.input[0]) is not None and produced_by[n.input[0]].op_type == "DequantizeLinear"]
    assert len(moves) >= 3 * (G.cfg.g_blocks - 1)   # into channels-last, the interleave, back
    monkeypatch.setattr(quantize, "MIN_INT8_MASK_AGREEMENT", 1.01)
    with pytest.raises(ExportError, match="int8 mask agreement"):
        quantize.int8_variant(fp32, quantize.grid_feed(64, (3, 5)), "x", has_masks=True)


def test_export_bad_inputs(tmp_path, run_dir):
    runner = CliRunner()
    res = runner.invoke(zoo_main, ["export", str(tmp_path), "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "not a run folder" in res.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    res = runner.invoke(zoo_main, ["export", str(run_dir), "--out", str(tmp_path / "busy")])
    assert res.exit_code == 1 and "not empty" in res.output


def test_progress_goes_to_stderr_and_quiet_silences_it(tmp_path, run_dir):
    """The exporter logs (logging, INFO); the CLI shows it on stderr, nothing on stdout, and -q hides it."""
    res = CliRunner().invoke(zoo_main, ["export", str(run_dir), "--out", str(tmp_path / "a"), "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert "fp32 ONNX: parity with PyTorch" in res.stderr and res.stdout == ""
    res = CliRunner().invoke(zoo_main, ["export", str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32",
                                        "-q"])
    assert res.exit_code == 0 and res.output == "", res.output


def test_overwrite_replaces_entries_only(tmp_path, run_dir, entry):
    """--overwrite once replaced any folder (issue 12, high 1): a thesis folder was wiped with exit 0."""
    runner = CliRunner()
    thesis = tmp_path / "thesis"
    (thesis / "src").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "link").symlink_to(entry)
    for out in (thesis, tmp_path / "notes.txt", tmp_path / "link"):
        for cmd in (["export", str(run_dir)], ["import-reference", str(tmp_path / "no-ckpt")]):
            res = runner.invoke(zoo_main, [*cmd, "--out", str(out), "--overwrite", "-q"])
            assert res.exit_code == 1 and "--overwrite only replaces entries" in res.output, (out, cmd, res.output)
    assert (thesis / "thesis.tex").read_text() == "years of work" and (thesis / "src").is_dir()
    assert (tmp_path / "notes.txt").read_text() == "keep" and (entry / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "notes.txt", "thesis"]  # no stage left behind
    # an entry folder is replaced
    again = tmp_path / "again"
    assert runner.invoke(zoo_main, ["export", str(run_dir), "--out", str(again), "--precision", "fp32", "-q"]).exit_code == 0
    (again / "stale.txt").write_text("from the old export")
    res = runner.invoke(zoo_main, ["export", str(run_dir), "--out", str(again), "--precision", "fp32", "--overwrite", "-q"])
    assert res.exit_code == 0, res.output
    assert (again / "config.json").is_file() and not (again / "stale.txt").exists()


# -- reference importer --------------------------------------------------------------------------------------
CH = [256, 256, 256, 128, 64, 32]  # 64x96 training size, ch_G 32: grid 4x6, 5 blocks


def reference_state_dict(seed=0, classes=3):
    """Built from the documented key layout (reference-checkpoint.md), not from our modules."""
    g = torch.Generator().manual_seed(seed)

    def sn(prefix, cout, cin, k, bias=True):
        w = torch.randn(cout, cin, k, k, generator=g) * 0.05
        u = torch.nn.functional.normalize(torch.randn(cout, generator=g), dim=0)
        for _ in range(3):  # a few power iterations, as training leaves them
            v = torch.nn.functional.normalize(w.reshape(cout, -1).t() @ u, dim=0)
            u = torch.nn.functional.normalize(w.reshape(cout, -1) @ v, dim=0)
        out = {f"{prefix}.weight_orig": w, f"{prefix}.weight_u": u, f"{prefix}.weight_v": v}
        if bias:
            out[f"{prefix}.bias"] = torch.randn(cout, generator=g) * 0.01
        return out

    sd = {"first_linear.weight": torch.randn(64, 256, 4, 6, generator=g) * 0.05,
          "first_linear.bias": torch.randn(256, generator=g) * 0.01}
    for i in range(5):
        cin, cout = CH[i], CH[i + 1]
        mid = min(cin, cout)
        sd |= sn(f"body.{i}.conv1", mid, cin, 3) | sn(f"body.{i}.conv2", cout, mid, 3)
        sd |= sn(f"body.{i}.conv_sc", cout, cin, 1, bias=False) | sn(f"rgb_converters.{i}", 3, cout, 3)
    sd["mask_converter.weight"] = torch.randn(classes, 32, 3, 3, generator=g) * 0.05
    sd["mask_converter.bias"] = torch.zeros(classes)
    return sd


def reference_forward(sd, z):
    """The reference's eval-mode forward written out by hand: sigma = u . (W v) from the stored vectors."""
    F = torch.nn.functional

    def w(p):
        wo = sd[f"{p}.weight_orig"]
        sigma = torch.dot(sd[f"{p}.weight_u"], wo.reshape(wo.shape[0], -1) @ sd[f"{p}.weight_v"])
        return wo / sigma

    x = F.conv_transpose2d(z.view(-1, 64, 1, 1), sd["first_linear.weight"], sd["first_linear.bias"])
    for i in range(5):
        h = F.leaky_relu(x, 0.2)
        sc = x
        if i > 0:
            h, sc = F.interpolate(h, scale_factor=2), F.interpolate(sc, scale_factor=2)
        h = F.conv2d(h, w(f"body.{i}.conv1"), sd[f"body.{i}.conv1.bias"], padding=1)
        h = F.conv2d(F.leaky_relu(h, 0.2), w(f"body.{i}.conv2"), sd[f"body.{i}.conv2.bias"], padding=1)
        x = h + F.conv2d(sc, w(f"body.{i}.conv_sc"))
    img = torch.tanh(F.conv2d(x, w("rgb_converters.4"), sd["rgb_converters.4.bias"], padding=1))
    mask = F.conv2d(x, sd["mask_converter.weight"], sd["mask_converter.bias"], padding=1).softmax(1).argmax(1)
    return img, mask


def write_reference_ckpt(folder: Path, sd, opt=None):
    (folder / "models").mkdir(parents=True)
    torch.save(sd, folder / "models" / "2000_G_EMA.pth")
    torch.save(sd, folder / "models" / "1000_G_EMA.pth")
    (folder / "models" / "latest_epoch.txt").write_text("2000")
    opt = opt if opt is not None else Namespace(ch_G=32, noise_dim=64, max_size=330, lambda_DR=0.15, no_masks=False,
                                                dataroot="datasets", batch_size=5, EMA_decay=0.9999, norm_G="none")
    (folder / "opt.pkl").write_bytes(pickle.dumps(opt))


def test_import_reference_matches_the_reference_eval_output(tmp_path):
    sd = reference_state_dict()
    assert len(sd) == 79
    write_reference_ckpt(tmp_path / "ckpt", sd)
    out = tmp_path / "entry"
    res = CliRunner().invoke(zoo_main, ["import-reference", str(tmp_path / "ckpt"), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["grid_h"] == 4 and cfg["model"]["g_blocks"] == 5 and cfg["model"]["num_classes"] == 3
    assert cfg["training"]["iterations"] == 2000 and cfg["training"]["hyperparameters"]["lambda_DR"] == 0.15
    z = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_img, ref_mask = reference_forward(sd, z)
    ref_u8 = ((ref_img + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    image, mask = cpu_session(str(out / "onnx/generator.onnx")).run(None, {"z": latents_from(z.numpy(), (4, 6))})
    assert np.abs(image.astype(int) - ref_u8).max() <= 1
    assert (mask == ref_mask.numpy()).mean() >= 0.999


def test_import_reference_refuses_unsafe_pickles_and_bad_layouts(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    write_reference_ckpt(tmp_path / "a", reference_state_dict(), opt=Evil())
    res = CliRunner().invoke(zoo_main, ["import-reference", str(tmp_path / "a"), "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "opt.pkl: not a plain options file" in res.output and "pwned" not in res.output
    bad = reference_state_dict()
    del bad["body.2.conv2.bias"]
    write_reference_ckpt(tmp_path / "b", bad)
    res = CliRunner().invoke(zoo_main, ["import-reference", str(tmp_path / "b"), "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "does not match the reference generator layout" in res.output
    res = CliRunner().invoke(zoo_main, ["import-reference", str(tmp_path), "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "no models/ folder" in res.output
    assert not (tmp_path / "e").exists()
