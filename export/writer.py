"""Write a scene entry folder from a trainer run: config.json, model.safetensors (EMA generator),
onnx/generator.onnx (+ .int8 / .fp16 variants) and preview.png. The folder is assembled beside its final
place and renamed into it, so a failed or interrupted export leaves nothing half-written."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_numpy
from safetensors.torch import load_file, save_file

from runtime.latents import latent_grid, latent_vectors
from runtime.sampler import MICRO_BATCH, RECONSTRUCTION, fixed_runs
from runtime.training_frames import encode as encode_training_frames
from trainer.checkpoint import guard_state
from trainer.generator import Generator
from trainer.preview import preview_grid
from trainer.run import Run
from zoo.entry_config import ENTRY_FORMAT, MAPS_SCHEME, ONNX_FILES, EntryConfig, is_entry_config
from zoo.files import UMASK, sha256_file
from zoo.quality import reference
from zoo.sessions import open_session
from zoo.versions import versions

from .graph import IMAGE_LAYOUT, ExportError
from .onnx_export import OPSET, check_model, export_onnx, grid_bounds, to_onnx_bytes
from .quantize import grid_feed, int8_variant, measure

__all__ = ["PRECISIONS", "export_entry", "write_entry", "check_destination"]

logger = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8")
PREVIEW_SAMPLES = 8
MIN_SINGAN_SIDE = 16   # px: the coarsest noise map of a smaller output would shrink below a few pixels


def entry_config(G: Generator, classes: dict, training: dict) -> dict:
    cfg = G.cfg
    return {
        "format": ENTRY_FORMAT,
        "model": cfg.to_dict(),
        "latent": {"input": "z", "shape": ["batch", cfg.noise_dim, "grid_h", "grid_w"], "dtype": "float32",
                   "distribution": "standard normal", "trained_grid": [cfg.grid_h, cfg.grid_w],
                   "grid_bounds": grid_bounds(G), "pixels_per_cell": 2 ** (cfg.g_blocks - 1),
                   "custom_grid_method": "first-layer kernel resampled bilinearly to the grid, applied per cell"},
        "outputs": {"image": {"dtype": "uint8", "layout": IMAGE_LAYOUT},
                    **({"mask": {"dtype": "uint8", "layout": "NHW", "meaning": "class id"}} if cfg.has_masks else {})},
        "classes": classes,
        "training": {"size": [cfg.height, cfg.width], **training},
        "cost": {"macs_per_sample_at_trained_grid": sampling_macs(G)},
        "files": {},
        "versions": {**versions("torch", "onnx", "onnxruntime"), "opset": OPSET},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def sampling_macs(G: Generator) -> int:
    from trainer.describe import describe

    return describe(G.cfg)["g_macs_sampling"]


def _preview(onnx_data: bytes, G: Generator, palette) -> bytes:
    """Samples 0-7 of `runtime sample --seed 0` on CPU, computed as it computes them (same latents, runs of the
    same size, one thread), so the preview shows exactly what a user's first samples will be."""
    cfg = G.cfg
    z = latent_grid(latent_vectors(0, np.arange(PREVIEW_SAMPLES), cfg.noise_dim), (cfg.grid_h, cfg.grid_w))
    session = open_session(onnx_data, threads=1)
    runs = [session.run(None, {"z": part}) for part in fixed_runs(z, MICRO_BATCH["cpu"])]
    out = [np.concatenate([r[k] for r in runs])[:PREVIEW_SAMPLES] for k in range(len(runs[0]))]
    return preview_grid(out[0], out[1] if len(out) > 1 else None, palette)


def _singan_preview(onnx_data: bytes, cfg, palette) -> bytes:
    """Samples 0-7 of `runtime sample --seed 0`, with the runtime's noise maps."""
    from runtime.latents import latent_maps

    maps = latent_maps(0, np.arange(PREVIEW_SAMPLES), [(cfg.channels, h, w) for h, w in cfg.sizes])
    out = open_session(onnx_data, threads=1).run(None, {f"z{n}": m for n, m in enumerate(maps)})
    return preview_grid(out[0], out[1] if len(out) > 1 else None, palette)


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse to export over anything but nothing, an empty folder or (with `overwrite`) an entry folder:
    --overwrite replaces what an export wrote, never a folder of the user's."""
    if not out.exists() and not out.is_symlink() or out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    if not overwrite:
        raise ExportError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    if not _is_entry(out):
        raise ExportError(f"{out}: not a scene entry (no config.json of format {ENTRY_FORMAT}); "
                          "--overwrite only replaces entries")


def _is_entry(folder: Path) -> bool:
    return not folder.is_symlink() and folder.is_dir() and is_entry_config(folder / "config.json")


def export_entry(run_dir: Path, out: Path, *, precisions: tuple[str, ...] = ("fp32", "int8"),
                 probabilities: bool = False, overwrite: bool = False, weights: bool = True,
                 card: dict | None = None, checkpoint: bool = False, training_data: bool = True,
                 force: bool = False) -> dict:
    """Export a trainer run into an entry folder; returns the entry's config. `training_data` adds the training
    frames and masks under training/ (runtime.training_frames: `trainer eval` then works on the entry alone);
    `checkpoint` adds the run's latest full training state under checkpoint/ (a run folder: `trainer resume`
    continues it). A run whose last health check failed (trainer/health.py) is refused unless `force`."""
    check_destination(Path(out), overwrite)
    run = Run.open(run_dir)
    if run.model_config.arch == "singan":
        if probabilities:
            raise ExportError(f"{run_dir}: --probabilities is not available for SinGAN entries")
        return export_singan_entry(run, out, precisions=precisions, card=card, training_data=training_data,
                                   checkpoint=checkpoint)
    G, ckpt = run.ema_generator()
    run_config = run.config
    last = (guard_state(ckpt) or {}).get("last")
    if last and last["problems"] and not force:
        raise ExportError(f"{ckpt}: the last health check (iteration {last['iter']}) failed: "
                          f"{'; '.join(last['problems'])} (pass --force to export it anyway)")
    data = run_config.get("data", {})
    classes = {"names": data.get("class_names") or [], "palette": data.get("palette") or []}
    training = {"iterations": int(ckpt.stem.split("-")[1]), "frames": len(data.get("frames") or []),
                "fingerprint": data.get("fingerprint", {}), "hyperparameters": run_config.get("train", {})}
    if last:
        training["health"] = last
    frames, masks = run.frames()
    stats = reference(frames)
    extra: dict[str, Path | bytes] = {}
    if training_data:
        extra.update(encode_training_frames(frames, masks if G.cfg.has_masks else None, classes["palette"]))
    if checkpoint:
        extra.update({f"checkpoint/{n}": Path(run_dir) / n for n in ("config.json", "data.safetensors")})
        extra[f"checkpoint/checkpoints/{ckpt.name}"] = ckpt
    return write_entry(G, out, classes, training, precisions=precisions, probabilities=probabilities, weights=weights,
                       card=card, extra=extra, reference_stats=stats)


def write_entry(G: Generator, out: Path, classes: dict, training: dict, *, precisions: tuple[str, ...] = ("fp32",),
                probabilities: bool = False, weights: bool = True, card: dict | None = None,
                extra: dict[str, Path | bytes] | None = None, reference_stats: dict | None = None) -> dict:
    """Export G's ONNX variants, weights, preview and config into `out`, all or nothing. `extra` maps entry
    file names to files copied in as they are, or to their bytes; `reference_stats` is the training frames'
    quality reference (zoo.quality; without it `runtime sample --drop-worst` is unavailable)."""
    out = Path(out)
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ExportError(f"unknown precision {sorted(unknown)}; choose from {', '.join(PRECISIONS)}")
    config = entry_config(G, classes, training)
    grid = (G.cfg.grid_h, G.cfg.grid_w)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        (stage / "onnx").mkdir()
        t0 = time.perf_counter()
        report = export_onnx(G, stage / ONNX_FILES["fp32"], probabilities, where=str(out / ONNX_FILES["fp32"]))
        fp32 = (stage / ONNX_FILES["fp32"]).read_bytes()
        logger.info(f"fp32 ONNX: parity with PyTorch over {len(report['checks'])} grid x batch cases, "
            f"worst {report['worst']} ({time.perf_counter() - t0:.1f} s)")
        config["files"][ONNX_FILES["fp32"]] = {"precision": "fp32", "parity_vs_torch": report["worst"]}
        if "int8" in precisions:
            # quantized from the phases-nhwc graph (export.graph.UPSAMPLING), measured against the fp32 it ships with
            source = to_onnx_bytes(G, probabilities, upsampling="phases-nhwc")
            data, quality = int8_variant(source, grid_feed(G.cfg.noise_dim, grid), str(out / ONNX_FILES["int8"]),
                                         has_masks=G.cfg.has_masks, reference=fp32)
            (stage / ONNX_FILES["int8"]).write_bytes(data)
            config["files"][ONNX_FILES["int8"]] = {"precision": "int8", "quality_vs_fp32": quality}
            logger.info(f"int8 ONNX: {quality}")
        if "fp16" in precisions:
            data = to_onnx_bytes(G, probabilities, half=True)
            check_model(data, str(out / ONNX_FILES["fp16"]))
            (stage / ONNX_FILES["fp16"]).write_bytes(data)
            quality = measure(fp32, data, grid_feed(G.cfg.noise_dim, grid)).as_dict()
            config["files"][ONNX_FILES["fp16"]] = {"precision": "fp16", "quality_vs_fp32": quality}
            logger.info(f"fp16 ONNX: {quality}")
        if weights:
            save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(stage / "model.safetensors"),
                      metadata={"format": "oneshot-gan-generator/1", "weights": "EMA"})
            os.chmod(stage / "model.safetensors", 0o666 & ~UMASK)   # safetensors writes it private (0600)
            config["files"]["model.safetensors"] = {"weights": "EMA generator, reference state-dict layout"}
        (stage / "preview.png").write_bytes(_preview(fp32, G, config["classes"]["palette"] or None))
        config["files"]["preview.png"] = {}
        if reference_stats is not None:
            (stage / "quality.json").write_text(json.dumps(reference_stats) + "\n")
            config["files"]["quality.json"] = {"score": reference_stats["score"]}
        for name, src in (extra or {}).items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                (stage / name).write_bytes(src)
            else:
                shutil.copyfile(src, stage / name)
            config["files"][name] = {}
        _finish(stage, out, config, card)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return config


def _finish(stage: Path, out: Path, config: dict, card: dict | None) -> None:
    """The model card, every file's hash and size, config.json (through its owner: an export never writes a config
    the runtime would refuse), then the staged folder into place."""
    (stage / "README.md").write_text(model_card(config, card or {}))
    config["files"]["README.md"] = {}   # listed after the card is written: a pull checks it like the rest
    for name in config["files"]:
        config["files"][name]["sha256"] = sha256_file(stage / name)
        config["files"][name]["bytes"] = (stage / name).stat().st_size
    (stage / "config.json").write_text(EntryConfig.from_dict(config, where=out / "config.json").to_json())
    _swap_into_place(stage, out)


def export_singan_entry(run: Run, out: Path, *, precisions: tuple[str, ...], card: dict | None,
                        training_data: bool, checkpoint: bool) -> dict:
    """A SinGAN run as an entry: onnx/generator.onnx with one noise input per scale (export.singan_onnx), checked
    against PyTorch at the trained size and two others, and its int8 and fp16 variants. The pyramid's PyTorch
    weights travel only in checkpoint/ (`checkpoint`): no sampling backend reads a SinGAN model.safetensors."""
    from .singan_onnx import maps_feed, parity, to_onnx_bytes

    out = Path(out)
    model, ckpt = run.singan()
    cfg = model.cfg
    data = run.config.get("data", {})
    classes = {"names": data.get("class_names") or [], "palette": data.get("palette") or []}
    (h, w), sizes = cfg.sizes[-1], [list(s) for s in cfg.sizes]
    config = {
        "format": ENTRY_FORMAT, "model": {**cfg.to_dict(), "noise_dim": cfg.channels},
        "latent": {"scheme": MAPS_SCHEME, "inputs": [f"z{n}" for n in range(len(sizes))], "map_sizes": sizes,
                   "dtype": "float32", "distribution": "standard normal", "trained_grid": [h, w],
                   "pixels_per_cell": 1, "grid_bounds": {"min": [MIN_SINGAN_SIDE, MIN_SINGAN_SIDE],
                                                         "max": [4 * h, 4 * w]},
                   "custom_grid_method": "the grid is the output size; every scale's map keeps its ratio to it"},
        "outputs": {"image": {"dtype": "uint8", "layout": IMAGE_LAYOUT},
                    **({"mask": {"dtype": "uint8", "layout": "NHW", "meaning": "class id"}} if cfg.has_masks else {})},
        "classes": classes,
        "training": {"size": [h, w], "iterations": int(ckpt.stem.split("-")[1]),
                     "frames": len(data.get("frames") or []), "fingerprint": data.get("fingerprint", {}),
                     "hyperparameters": run.config.get("train", {})},
        "files": {}, "versions": {**versions("torch", "onnx", "onnxruntime"), "opset": OPSET},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    frames, masks = run.frames()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        (stage / "onnx").mkdir()
        onnx_data = to_onnx_bytes(model)
        check_model(onnx_data, str(out / ONNX_FILES["fp32"]))
        report = parity(model, onnx_data, str(out / ONNX_FILES["fp32"]),
                        sizes=[(h, w), (h + h // 4, w), (h, w + w // 2)])
        (stage / ONNX_FILES["fp32"]).write_bytes(onnx_data)
        config["files"][ONNX_FILES["fp32"]] = {"precision": "fp32", "parity_vs_torch": report["worst"]}
        if "int8" in precisions:
            data, quality = int8_variant(onnx_data, maps_feed(cfg), str(out / ONNX_FILES["int8"]),
                                         has_masks=cfg.has_masks)
            (stage / ONNX_FILES["int8"]).write_bytes(data)
            config["files"][ONNX_FILES["int8"]] = {"precision": "int8", "quality_vs_fp32": quality}
        if "fp16" in precisions:
            data = to_onnx_bytes(model, half=True)
            check_model(data, str(out / ONNX_FILES["fp16"]))
            (stage / ONNX_FILES["fp16"]).write_bytes(data)
            quality = measure(onnx_data, data, maps_feed(cfg)).as_dict()
            config["files"][ONNX_FILES["fp16"]] = {"precision": "fp16", "quality_vs_fp32": quality}
        extra = encode_training_frames(frames, masks if cfg.has_masks else None, classes["palette"]) \
            if training_data else {}
        if checkpoint:
            extra.update({f"checkpoint/{n}": (run.root / n).read_bytes() for n in ("config.json", "data.safetensors")})
            extra[f"checkpoint/checkpoints/{ckpt.name}"] = ckpt.read_bytes()
        stats = reference(frames)
        z_rec = load_file(str(ckpt))["z_rec"].numpy()   # what reconstructs the training image: --start-scale
        extra.update({RECONSTRUCTION: save_numpy({"z0": np.ascontiguousarray(z_rec, np.float32)}),
                      "quality.json": (json.dumps(stats) + "\n").encode(),
                      "preview.png": _singan_preview(onnx_data, cfg, classes["palette"] or None)})
        for name, blob in extra.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(blob)
            config["files"][name] = {}
        config["files"]["quality.json"] = {"score": stats["score"]}
        _finish(stage, out, config, card)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return config


def model_card(config: dict, card: dict) -> str:
    """A Hugging Face model card: YAML metadata, then what the scene is and how to sample it."""
    h, w = config["training"]["size"]
    names = config["classes"]["names"]
    singan = config["model"].get("arch") == "singan"
    lines = ["---", "library_name: oneshot-gan", "pipeline_tag: unconditional-image-generation",
             "tags:", "- one-shot-gan", "- osmis", "- image-segmentation-masks", "- data-augmentation",
             f"license: {card.get('license', 'other')}",
             # the scene's facts, machine-readable (json.dumps quotes strings the YAML way)
             f"training_image: {json.dumps(card.get('source', 'not recorded'))}",
             f"training_image_license: {json.dumps(card.get('image_license', 'not recorded'))}",
             f"training_size: [{h}, {w}]", f"classes: {json.dumps(names)}", "preview: preview.png",
             "---", "",
             f"# {card.get('title', 'One-shot image + mask GAN scene')}", "",
             ("A SinGAN pyramid" if singan else "A One-Shot GAN / OSMIS generator")
             + " trained on a single scene. It samples new images of the scene"
             + (" with aligned segmentation masks." if names else "."), "",
             f"- training image: {card.get('source', 'not recorded')}",
             f"- training image licence: {card.get('image_license', 'not recorded')}",
             f"- training size: {h}x{w}, " + (f"{len(config['latent']['map_sizes'])} scales" if singan else
                                                f"latent grid {config['latent']['trained_grid'][0]}x"
                                                f"{config['latent']['trained_grid'][1]}")
             + f", {config['training'].get('iterations', '?')} iterations",
             f"- classes: {', '.join(names) if names else 'none (images only)'}",
             f"- training frames: {_training_data_line(config, card)}",
             f"- files: {', '.join(sorted(config['files']))}", "", "![preview](preview.png)", "",
             "```bash", "runtime sample THIS_FOLDER --count 1000 --out samples", "```", ""]
    return "\n".join(lines + _evaluation_lines(card.get("evaluation")))


def read_evaluation(path: Path) -> dict:
    """A `trainer eval --json` result, for the model card."""
    from trainer.report import metric_rows

    try:
        result = json.loads(Path(path).read_text())
        metric_rows(result)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ExportError(f"{path}: not readable ({e})") from None
    except (KeyError, TypeError, AttributeError):
        raise ExportError(f"{path}: not the output of `trainer eval --json`") from None
    return result


def _evaluation_lines(result: dict | None) -> list[str]:
    if not result:
        return []
    from trainer.report import metric_rows

    rows = [(name, value) for name, value, _ in metric_rows(result) if "needs ImageNet" not in value]
    return ["## Evaluation", "",
            f"`trainer eval` on {result['samples']} samples (seed {result['seed']}) against the "
            f"{result['training_frames']} training frame(s) (definitions: `trainer eval --json`).", "",
            "| metric | value |", "|---|---|", *(f"| {n} | {v.replace('|', '/')} |" for n, v in rows), ""]


def _training_data_line(config: dict, card: dict) -> str:
    frames = [n for n in config["files"] if n.startswith("training/frame-")]
    if not frames:
        return "not included (exported with --no-training-data); `trainer eval` needs them passed with --image"
    return (f"{len(frames)} under training/ at the training size, for `trainer eval`; licence: "
            f"{card.get('image_license', 'not recorded')}")


def _swap_into_place(stage: Path, out: Path) -> None:
    os.chmod(stage, 0o777 & ~UMASK)  # mkdtemp makes it private
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
