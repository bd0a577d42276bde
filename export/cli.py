"""`zoo export` and `zoo import-reference`: registered into the zoo's command line as entry points
(pyproject.toml, group oneshot_gan.zoo_commands), so the torch-free zoo never imports the exporter. Only click at
module level: `zoo --help` lists these commands without loading torch."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.errors import UserError, log_to_stderr, user_errors


def _needs_export_extra():
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise UserError(f"this command needs the exporter: pip install 'oneshot-gan[export]' ({e})") from None


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Entry folder to write.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["fp32", "fp16", "int8"]),
              default=("fp32", "int8"), show_default=True, help="Variants to write (fp32 is always written).")
@click.option("--probabilities", is_flag=True, help="Also output class probabilities (B, M, H, W) float32.")
@click.option("--no-weights", is_flag=True, help="Leave out model.safetensors (a sampling-only entry).")
@click.option("--no-training-data", is_flag=True,
              help="Leave out the training frames and masks (training/; `trainer eval` then needs --image).")
@click.option("--checkpoint", is_flag=True, help="Add the full training state under checkpoint/ (others can resume).")
@click.option("--title", default=None, help="Model card title.")
@click.option("--source", default=None, help="Model card: where the training image comes from.")
@click.option("--image-license", default=None, help="Model card: the training image's licence.")
@click.option("--license", "license_", default="other", show_default=True, help="Model card licence id.")
@click.option("--evaluation", type=click.Path(path_type=Path), default=None,
              help="`trainer eval --json` output of this run: its numbers go into the model card.")
@click.option("--overwrite", is_flag=True)
@click.option("--force", is_flag=True, help="Export even if the run's last health check failed (a collapsed run).")
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def export_cmd(run_dir, out, precisions, probabilities, no_weights, no_training_data, checkpoint, title, source,
               image_license, license_, evaluation, overwrite, force, quiet):
    """Export a trainer run's EMA generator to an entry folder (ONNX + config + weights)."""
    _needs_export_extra()
    from export.writer import export_entry, read_evaluation

    log_to_stderr(quiet)
    card = {k: v for k, v in {"title": title, "source": source, "image_license": image_license,
                              "license": license_}.items() if v}
    if evaluation is not None:
        card["evaluation"] = read_evaluation(evaluation)
    config = export_entry(run_dir, out, precisions=tuple(dict.fromkeys(("fp32", *precisions))),
                          probabilities=probabilities, overwrite=overwrite, weights=not no_weights, card=card,
                          checkpoint=checkpoint, training_data=not no_training_data, force=force)
    if not quiet:
        click.echo(f"wrote {out}: {', '.join(config['files'])}", err=True)


@click.command("import-reference")
@click.argument("ckpt_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Entry folder to write.")
@click.option("--iteration", type=int, default=None, help="Which <iter>_G_EMA.pth [latest_epoch.txt or newest].")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def import_reference_cmd(ckpt_dir, out, iteration, overwrite, quiet):
    """Convert a checkpoint folder of the authors' implementation into an entry folder."""
    _needs_export_extra()
    from export.reference import import_reference

    log_to_stderr(quiet)
    import_reference(ckpt_dir, out, iteration=iteration, overwrite=overwrite)
