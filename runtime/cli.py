"""`runtime` command line: sample, info, bench."""

from __future__ import annotations

import json
import sys

import click

from zoo.cli import hub_options, quiet_downloads
from zoo.errors import OneLineErrors, UserError, user_errors

from .latents import MAX_INDEX, MAX_SEED


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oneshot-gan")
def main() -> None:
    """Sample images and segmentation masks from scene models."""


@main.command()
@click.argument("scene", required=False)
@click.option("--count", type=click.IntRange(1, MAX_INDEX), default=1000, show_default=True)
@click.option("--out", default="samples", show_default=True,
              help="A folder; for webdataset and npz also a URI fsspec understands (s3://bucket/prefix with s3fs, "
                   "gs:// with gcsfs, ...).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Sample i depends only on (seed, i).")
@click.option("--start-index", type=click.IntRange(0, MAX_INDEX), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="[auto: about 0.5 M pixels per batch]")
@click.option("--grid", default=None, help="Latent grid HxW [the trained grid].")
@click.option("--size", default=None, help="Output size HxW (a multiple of the model's pixels per cell).")
@click.option("--start-scale", type=click.IntRange(0, 31), default=0, show_default=True,
              help="SinGAN entries: random noise from this scale up, the training image's reconstruction noise "
                   "below (keeps its layout; trained size only).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default="fp32", show_default=True,
              help="bf16: the torch backend only.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]), default="auto",
              show_default=True, help="tensorrt: native TensorRT engines (GPU); torch: the entry's PyTorch weights "
              "(`zoo pull --weights`), CPU or CUDA; both need the exporter installed. auto = onnxruntime.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto", show_default=True,
              help="onnxruntime provider: cuda/tensorrt need onnxruntime-gpu [auto: cuda if available].")
@click.option("--format", "fmt", type=click.Choice(["png", "webdataset", "npz"]), default="png", show_default=True,
              help="png: images/ + masks/ + metadata.jsonl; webdataset: tar shards; npz: raw array shards.")
@click.option("--mask-preview", is_flag=True, help="Also write coloured masks to previews/.")
@click.option("--png-compression", type=click.IntRange(0, 9), default=1, show_default=True,
              help="0 = none; 1 = fast (images: Paeth rows, Huffman only, about zlib level 6's size); 2-9 = zlib levels.")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="Encoding processes [CPU count]; 0 = one thread in this process.")
@click.option("--drop-worst", type=float, default=0.0, show_default=True, metavar="FRACTION",
              help="Leave out this fraction of samples with the worst quality score (patch-frechet-v1, as "
                   "`trainer eval` reports it; OSMIS drops 0.15).")
@click.option("--resume", is_flag=True, help="Skip samples already complete in --out.")
@click.option("--overwrite", is_flag=True)
@click.option("--ray", "use_ray", is_flag=True,
              help="Sample and write on a Ray cluster (the `ray` extra): same files, same bytes.")
@click.option("--address", default=None, help="With --ray: the cluster [$RAY_ADDRESS, else a local Ray].")
@click.option("--actors", type=click.IntRange(1, 100_000), default=None,
              help="With --ray: sampling actors, one CPU each [the cluster's CPUs].")
@click.option("--gpus-per-actor", type=click.FloatRange(0, 64), default=None,
              help="With --ray: GPUs each actor holds [1 with --device cuda, else 0].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True)
@hub_options
@user_errors
def sample(scene, count, out, seed, start_index, batch_size, grid, size, start_scale, precision, backend, device, fmt,
           mask_preview, png_compression, workers, drop_worst, resume, overwrite, use_ray, address, actors,
           gpus_per_actor, as_json, quiet, hub, index):
    """Write COUNT new image/mask pairs of SCENE to --out.

    SCENE: a bundled or index name, org/repo[@revision] on the Hugging Face Hub (pulled once, then used
    from the cache), or an entry folder [coins]."""
    from zoo.sizes import parse_hw

    from .job import Interrupted, sample_to_folder
    from .sampler import Sampler, load_backend

    if grid is not None and size is not None:
        raise UserError("give --grid or --size, not both")
    quiet_downloads(quiet or as_json)   # a Hub scene is pulled on first use
    sampler = Sampler.from_pretrained(scene, precision=precision, device=device, index=index, hub=hub,
                                      backend="torch" if backend == "torch" else None)
    g = sampler.grid_for(parse_hw(grid, what="--grid") if grid is not None else None,
                         parse_hw(size, what="--size") if size is not None else None)
    if backend == "tensorrt":
        found, sampler = sampler.scene, load_backend(backend)(sampler.entry, precision, grid=g)
        sampler.scene = found
    if not use_ray and (address or actors or gpus_per_actor is not None):
        raise UserError("--address, --actors and --gpus-per-actor go with --ray")
    if use_ray and drop_worst:
        raise UserError("--drop-worst is not available with --ray")
    sampler.set_start_scale(start_scale, g)
    job = dict(scene=sampler.scene.ref.label, count=count, seed=seed, start=start_index, grid=g, batch_size=batch_size,
               compress_level=png_compression, mask_preview=mask_preview, resume=resume, overwrite=overwrite,
               quiet=quiet, fmt=fmt)
    try:
        if use_ray:
            from .ray import sample_to_folder_on_ray

            summary = sample_to_folder_on_ray(sampler, out, actors=actors, address=address,
                                              gpus_per_actor=gpus_per_actor, **job)
        else:
            summary = sample_to_folder(sampler, out, workers=workers, drop_worst=drop_worst, **job)
    except Interrupted as e:
        click.echo(f"interrupted: {e.complete} samples are complete in {out}; finish with --resume", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"wrote {summary['written']} samples ({summary['size'][0]}x{summary['size'][1]}) to {out} "
                   f"in {summary['seconds']:.1f} s ({summary['samples_per_s']:.1f} samples/s)", err=True)


@main.command()
@click.argument("scene", required=False)
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def info(scene, as_json, hub, index):
    """Classes, training size, reachable grids, artifacts and providers of SCENE."""
    import onnxruntime as ort

    from zoo.info import plain

    from .sampler import find_scene

    found = find_scene(scene, index, hub)
    entry = found.entry
    (lo, hi), ppc = entry.grid_bounds, entry.pixels_per_cell
    data = {"scene": found.ref.label, "folder": str(entry.root), "revision": found.commit,
            "classes": entry.class_names,
            "training_size": list(entry.config.training_size), "trained_grid": list(entry.trained_grid),
            "grid_bounds": {"min": list(lo), "max": list(hi)}, "pixels_per_cell": ppc,
            "sizes": {"min": [lo[0] * ppc, lo[1] * ppc], "max": [hi[0] * ppc, hi[1] * ppc]},
            "artifacts": {k: {kk: v.details[kk] for kk in ("bytes", "precision") if kk in v.details}
                          for k, v in entry.config.files.items()},
            "precisions": entry.precisions(), "providers": ort.get_available_providers()}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(plain(f"scene          {data['scene']} ({data['folder']})"))
    click.echo(plain(f"classes        {', '.join(data['classes']) or 'no masks'}"))
    click.echo(f"training size  {data['training_size'][0]}x{data['training_size'][1]} "
               f"(grid {entry.trained_grid[0]}x{entry.trained_grid[1]}, {ppc} px per cell)")
    click.echo(f"grids          {lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]} "
               f"(sizes {lo[0] * ppc}x{lo[1] * ppc} .. {hi[0] * ppc}x{hi[1] * ppc}, multiples of {ppc})")
    click.echo(f"precisions     {', '.join(data['precisions'])}")
    click.echo(f"providers      {', '.join(data['providers'])}")


@main.command()
@click.argument("scene", required=False)
@click.option("--reps", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def bench(scene, reps, as_json, hub, index):
    """Measure peak GEMM, model-only and end-to-end throughput of SCENE, side by side."""
    from .bench import format_bench, run_bench
    from .sampler import find_scene

    summary = run_bench(str(find_scene(scene, index, hub).path), reps)
    click.echo(json.dumps(summary, indent=2) if as_json else format_bench(summary))
