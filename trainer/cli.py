"""`trainer` command line: fit, resume, describe, eval."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import click

from zoo.errors import OneLineErrors, UserError, log_to_stderr, user_errors
from zoo.sizes import parse_hw

from .config import (MASK_GRADS, RECIPES, REFERENCE_EMA, REFERENCE_ITERS, REFERENCE_WARMUP, SINGAN_RECIPE, ConfigError,
                     TrainConfig, auto_config)
from .data import load_scene, to_training_arrays

# config.json goes last: it is what marks the folder as a run, so an overwrite killed half-way leaves a folder that
# --overwrite still recognises and replaces (deleted first, it left checkpoints that nothing would touch)
RUN_FILES = ("data.safetensors", "losses.jsonl", "preview.png", "checkpoints", "previews", "config.json")


class RunError(UserError):
    """A run directory that cannot be used as asked."""


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oneshot-gan")
def main() -> None:
    """Train one-shot image + segmentation-mask GANs from a single image or video."""


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunError(f"{out}: folder is not empty (continue it with `trainer resume {out}`, "
                           "or pass --overwrite to start over)")
        if not (out / "config.json").exists():
            raise RunError(f"{out}: not a run folder (no config.json); --overwrite only replaces runs")


def _clear_run(out: Path) -> None:
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


_T = TrainConfig()  # fit's defaults where the device does not choose them


def _per_device(key: str, fmt=str) -> str:
    """'[CPU x, GPU y]' for a setting of the per-device recipes, so the help never restates them."""
    return f"[CPU {fmt(RECIPES[True][key])}, GPU {fmt(RECIPES[False][key])}]"


# fit's options that only the one-shot GAN reads: with --arch singan, naming one is an error, not a no-op
ONESHOT_ONLY = ("width_mult", "batch_size", "aug_prob", "lambda_freq", "mask_grad", "presence_floor", "lambda_dr",
                "ema_decay", "bernoulli_warmup", "check_every", "guard", "max_rollbacks")


def _singan_options(precision: str) -> None:
    ctx = click.get_current_context()
    given = [p.opts[0] for p in ctx.command.params
             if p.name in ONESHOT_ONLY and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise ConfigError(f"{', '.join(given)}: not options of --arch singan (the paper's widths, batch 1, "
                          "WGAN-GP; see trainer fit --help)")
    if precision != "fp32":
        raise ConfigError("--arch singan trains in fp32 (no --precision bf16)")


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--mask", type=click.Path(path_type=Path), help="Mask image, or folder of masks matched by file stem.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="Class names, one per line, background first.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder to create.")
@click.option("--max-size", type=click.IntRange(8), default=None,
              help=f"Longer side of the training image, in pixels {_per_device('max_size')}.")
@click.option("--iters", type=click.IntRange(1), default=None,
              help=f"Iterations {_per_device('iters', '{:,}'.format)}.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=_T.batch_size, show_default=True)
@click.option("--width", "width_mult", type=click.FloatRange(0, 4, min_open=True), default=None,
              help=f"Channel multiplier, 1.0 = the reference widths {_per_device('width')}.")
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"Adam learning rate of G and D {_per_device('lr', lambda v: f'{v:.0e}'.replace('e-0', 'e-'))}.")
@click.option("--aug-prob", type=click.FloatRange(0, 1), default=_T.aug_prob, show_default=True)
@click.option("--lambda-freq", type=click.FloatRange(0), default=_T.lambda_freq, show_default=True,
              help="Class-frequency prior: pulls the generated class shares towards the training masks' (0: off; "
                   "higher keeps rare classes more surely and draws them more along region edges).")
@click.option("--mask-grad", type=click.Choice(MASK_GRADS), default=_T.mask_grad, show_default=True,
              help="How D's gradient reaches the mask logits: the softmax over all classes (softmax, the "
                   "reference's), or the same except that a rare class (< 3 % of the training pixels) is not pushed "
                   "down in a sample that draws less of it than its training share (protect: keeps a rare class "
                   "from draining away; on a scene without one it is the softmax).")
@click.option("--presence-floor", type=click.FloatRange(0, 1), default=_T.presence_floor, show_default=True,
              help="Every sample should draw at least this share of each rare class's smallest share in a "
                   "training frame; rare: < 3 % of the training pixels (weighted by --lambda-freq; 0: off).")
@click.option("--lambda-dr", type=click.FloatRange(0), default=_T.lambda_dr, show_default=True)
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
              help=f"EMA decay of G [{REFERENCE_EMA}, horizon scaled to iters/{REFERENCE_ITERS:,} for shorter runs].")
@click.option("--bernoulli-warmup", type=click.IntRange(0), default=None,
              help=f"Iterations of Bernoulli masks [{REFERENCE_WARMUP:,} x iters/{REFERENCE_ITERS:,}].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=_T.seed, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=_T.device, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=_T.precision, show_default=True)
@click.option("--save-every", type=click.IntRange(1), default=None,
              help=f"Checkpoint every N iterations {_per_device('save_every', '{:,}'.format)}.")
@click.option("--preview-every", type=click.IntRange(1), default=None,
              help=f"Preview every N iterations {_per_device('preview_every', '{:,}'.format)}.")
@click.option("--log-every", type=click.IntRange(1), default=_T.log_every, show_default=True,
              help="Write losses.jsonl every N iterations.")
@click.option("--keep", type=click.IntRange(1), default=_T.keep, show_default=True,
              help="Checkpoints to keep (and the newest healthy one).")
@click.option("--check-every", type=click.IntRange(1), default=_T.check_every, show_default=True,
              help="Collapse-guard health check every N iterations.")
@click.option("--guard/--no-guard", default=_T.guard, show_default=True,
              help="On a collapse, roll back to the last healthy checkpoint (--no-guard: only report it).")
@click.option("--max-rollbacks", type=click.IntRange(0), default=_T.max_rollbacks, show_default=True,
              help="Rollbacks before a collapse stops the run.")
@click.option("--no-masks", is_flag=True, help="Ignore masks: train the image-only model.")
@click.option("--arch", type=click.Choice(["oneshot", "singan"]), default="oneshot", show_default=True,
              help="singan: the multi-scale baseline (one image; --iters per scale [2,000], --max-size [250], "
                   "--lr [5e-4], as in the paper).")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True,
              help="Video / frame folder: take every N-th frame.")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Video / frame folder: at most N frames.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@user_errors
def fit(source, mask, classes_file, out, max_size, width_mult, lr, no_masks, arch, every, max_frames, overwrite, quiet,
        **train):
    """Train a scene from SOURCE: an image, a folder of frames, or a video file.

    Defaults follow the device: on CPU the short recipe that bench/robustness.py checks on its scenes
    (minutes on 2 cores), on a GPU the reference's."""
    from .train import pick_device, to_float_images, write_run

    # options without a default take the device's recipe; the others are TrainConfig fields with its defaults
    recipe = SINGAN_RECIPE if arch == "singan" else RECIPES[pick_device(train["device"]).type == "cpu"]
    if arch == "singan":
        _singan_options(train["precision"])
    max_size = recipe["max_size"] if max_size is None else max_size
    width_mult = recipe["width"] if width_mult is None else width_mult
    lr = recipe["lr"] if lr is None else lr
    train.update({k: recipe[k] for k in ("iters", "save_every", "preview_every") if train[k] is None})
    _check_out(out, overwrite)
    scene = load_scene(source, mask, every=every, max_frames=max_frames, class_names_file=classes_file,
                       use_masks=not no_masks)
    h, w = scene.size
    if arch == "singan" and len(scene.frames) > 1:
        raise ConfigError(f"{source}: SinGAN trains on one image, this has {len(scene.frames)} frames "
                          "(--max-frames 1 takes the first)")
    from .singan import SinGANConfig

    try:
        model_cfg = (SinGANConfig.for_image(h, w, max_size=max_size, num_classes=scene.num_classes)
                     if arch == "singan" else
                     auto_config(h, w, max_size=max_size, num_classes=scene.num_classes, width_mult=width_mult))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e} (image {w}x{h}, --max-size {max_size})") from None
    train_cfg = TrainConfig(**train, lr_g=lr, lr_d=lr).resolved()
    images, masks = to_training_arrays(scene, model_cfg.height, model_cfg.width)
    data_info = {"source": str(Path(source).resolve()), "mask": str(Path(mask).resolve()) if mask and not no_masks else None,
                 "frames": scene.names, "source_size": [h, w], "fingerprint": scene.fingerprint,
                 "mask_encoding": scene.mask_encoding, "class_names": scene.class_names,
                 "palette": scene.palette, "source_ids": scene.source_ids, "every": every, "max_frames": max_frames}
    trainer = _trainer(out, model_cfg, train_cfg, to_float_images(images), masks, scene.palette or None)
    try:
        if overwrite:
            _clear_run(out)
        write_run(out, model_cfg=model_cfg, train_cfg=train_cfg, data_info=data_info, images_u8=images, masks=masks)
    except OSError as e:   # a read-only or full filesystem
        raise RunError(f"{out}: cannot write the run folder ({e.strerror or e})") from None
    if not quiet:
        layout = (f"{len(model_cfg.sizes)} scales of {train_cfg.iters:,} iterations" if arch == "singan" else
                  f"grid {model_cfg.grid_h}x{model_cfg.grid_w}")
        click.echo(f"training {model_cfg.height}x{model_cfg.width} ({layout}, {len(scene.frames)} frame(s), "
                   f"{scene.num_classes or 'no'} classes) on {trainer.device} -> {out}", err=True)
    _run(trainer, out, quiet)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--iters", type=click.IntRange(1), default=None,
              help="New total number of iterations (SinGAN: per scale, for the current and the later scales).")
@click.option("--guard/--no-guard", default=None, help="Change whether a collapse rolls back (default: as the run).")
@click.option("--max-rollbacks", type=click.IntRange(0), default=None, help="Change the rollback budget.")
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def resume(run_dir, iters, guard, max_rollbacks, quiet):
    """Continue the run in RUN_DIR from its latest checkpoint."""
    from .run import Run
    from .train import to_float_images

    run = Run.open(run_dir)
    if run.model_config.arch == "singan" and (guard is not None or max_rollbacks is not None):
        raise ConfigError(f"{run_dir}: a SinGAN run has no collapse guard (--guard, --max-rollbacks)")
    images, masks = run.frames()
    config = run.config
    changes = {k: v for k, v in (("iters", iters), ("guard", guard), ("max_rollbacks", max_rollbacks)) if v is not None}
    train_cfg = TrainConfig(**{**asdict(run.train_config), **changes})
    trainer = _trainer(run_dir, run.model_config, train_cfg, to_float_images(images), masks,
                       config["data"].get("palette") or None)
    start = trainer.restore_latest()
    if iters is not None and iters < start and run.model_config.arch != "singan":   # singan: iterations per scale
        raise ConfigError(f"--iters {iters} is below the iteration the run is at ({start}); nothing changed")
    if changes:  # later resumes keep them
        config["train"].update(changes)
        from zoo.files import atomic_write
        atomic_write(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if not quiet:
        click.echo(f"resuming {run_dir} at iteration {start} of {train_cfg.iters}", err=True)
    _run(trainer, run_dir, quiet)


def _trainer(out: Path, model_cfg, train_cfg: TrainConfig, images, masks, palette):
    """The training loop of the run's architecture."""
    if model_cfg.arch == "singan":
        from .singan_train import SinGANTrainer

        return SinGANTrainer(out, model_cfg, train_cfg, images, masks, palette)
    from .train import Trainer

    return Trainer(out, model_cfg, train_cfg, images, masks, palette)


def _run(trainer, out: Path, quiet: bool) -> None:
    try:
        finished = trainer.fit(quiet=quiet)
    except OSError as e:   # a full disk, a folder gone read-only: keep what the iterations so far learned
        at = trainer.iteration
        try:
            trainer.save()
            kept = f"saved a checkpoint at iteration {at}"
        except OSError:
            from .checkpoint import list_checkpoints

            ckpts = list_checkpoints(out / "checkpoints")
            kept = (f"could not save iteration {at}; the last checkpoint is {ckpts[-1].name}" if ckpts
                    else "no checkpoint could be saved")
        raise RunError(f"{out}: {e.strerror or e} while writing the run ({kept}); free space or fix the folder, "
                       f"then `trainer resume {out}`") from None
    if not finished:
        click.echo(f"interrupted: checkpoint saved at iteration {trainer.iteration}; "
                   f"continue with `trainer resume {out}`", err=True)
        sys.exit(130)
    if not quiet:
        click.echo(f"done: {trainer.iteration} iterations in {out}", err=True)


@main.command()
@click.option("--size", required=True, help="Image size HxW (before --max-size capping).")
@click.option("--classes", default=0, show_default=True, help="Mask classes including background (0 = no masks).")
@click.option("--width", "width_mult", default=1.0, show_default=True)
@click.option("--max-size", type=click.IntRange(8), default=None,
              help="Cap the longer side first, as fit does [singan: 250].")
@click.option("--arch", type=click.Choice(["oneshot", "singan"]), default="oneshot", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def describe(size, classes, width_mult, max_size, arch, as_json):
    """Print the architecture a training image of this size would get."""
    from .describe import describe_singan, describe_size, format_singan, format_text

    h, w = parse_hw(size)
    if arch == "singan":
        info = describe_singan(h, w, classes=classes, max_size=max_size)
        click.echo(json.dumps(info, indent=2) if as_json else format_singan(info))
        return
    info = describe_size(h, w, classes=classes, width_mult=width_mult, max_size=max_size)
    click.echo(json.dumps(info, indent=2) if as_json else format_text(info))


@main.command("eval")
@click.argument("target")
@click.option("--samples", type=click.IntRange(2, 100_000), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Sample i is `runtime sample --seed` sample i.")
@click.option("--image", type=click.Path(path_type=Path), default=None,
              help="Training image or frame folder (entries without checkpoint/ do not hold their frames).")
@click.option("--mask", type=click.Path(path_type=Path), default=None, help="Its mask(s).")
@click.option("--unet-steps", type=click.IntRange(1), default=500, show_default=True,
              help="Training steps of the mask-alignment UNet (batch 8).")
@click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
              help="InceptionV3 weights (torchvision or pytorch-fid state dict) to compute SIFID.")
@click.option("--lpips-weights", type=click.Path(path_type=Path), default=None,
              help="torchvision AlexNet ImageNet weights to compute LPIPS.")
@click.option("--index", default=None, help="Extra scene index for scene ids.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write report.json and report.html here.")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def eval_cmd(target, samples, seed, image, mask, unet_steps, inception_weights, lpips_weights, index, report_dir,
             as_json, quiet):
    """Diversity, memorisation, mask alignment and quality of TARGET (a run folder, an entry or a scene id)."""
    try:
        import pytorch_msssim  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        raise UserError(f"trainer eval needs its extra: pip install 'oneshot-gan[eval]' ({e})") from None
    from zoo.cli import quiet_downloads

    from .evaluate import evaluate, gather
    from .report import metric_rows, write_report

    log_to_stderr(quiet)
    quiet_downloads(quiet)
    log = (lambda *_: None) if quiet else (lambda msg: click.echo(msg, err=True))
    material = gather(target, samples, seed=seed, image=image, mask=mask, index=index)
    log(f"{target}: {samples} samples, {len(material.frames)} training frame(s)")
    result = evaluate(material, seed=seed, unet_steps=unet_steps, inception=inception_weights, lpips=lpips_weights)
    if report_dir is not None:
        write_report(result, material, report_dir)
        log(f"report: {report_dir / 'report.html'}")
    if as_json:
        click.echo(json.dumps(result))
    elif not quiet:
        click.echo("\n".join(f"{name:<36} {value}" for name, value, _ in metric_rows(result)))


if __name__ == "__main__":
    main()
