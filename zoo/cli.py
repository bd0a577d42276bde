"""`zoo` command line. This module must not import torch: the export commands are registered by `export` (an
entry point) and load it lazily."""

from __future__ import annotations

import functools
import json
import time
from importlib.metadata import entry_points
from pathlib import Path

import click

from .errors import OneLineErrors, UserError, user_errors
from .hub import DEFAULT_TIMEOUT, Hub

PLUGINS = "oneshot_gan.zoo_commands"


def hub_options(fn):
    """--index, --offline, --token, --endpoint, --timeout -> the command gets `hub` (a Hub) and `index`."""

    @functools.wraps(fn)
    def wrapper(*args, offline, token, endpoint, timeout, **kwargs):
        return fn(*args, hub=Hub.from_env(endpoint=endpoint, token=token, offline=offline, timeout=timeout), **kwargs)

    for option in (
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
                     show_default=True, metavar="SECONDS", help="Give up a download after this long in all."),
        click.option("--endpoint", default=None, help="Hub endpoint [$HF_ENDPOINT or https://huggingface.co]."),
        click.option("--token", default=None, envvar="HF_TOKEN", show_envvar=True,
                     help="Hub token, for private repos and pushing [public repos are fetched anonymously]."),
        click.option("--offline", is_flag=True, help="Only the local cache, no network (also: HF_HUB_OFFLINE=1)."),
        click.option("--index", default=None, metavar="PATH_OR_URL",
                     help="Extra scene index: a JSON file or hf://org/repo[@rev]/index.json [$ONESHOT_GAN_INDEX]."),
    ):
        wrapper = option(wrapper)
    return wrapper


def quiet_downloads(quiet: bool) -> None:
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


class ZooCommands(OneLineErrors):
    """The zoo's commands plus those other packages of this distribution register under the entry-point group
    PLUGINS (`zoo export` and `zoo import-reference` come from `export`, which needs torch): the zoo never imports
    them, and each loads only when it is listed or run."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=PLUGINS)}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx, name):
        found = super().get_command(ctx, name)
        if found is None and name in self._plugins():
            found = self._plugins()[name].load()
        return found


@click.group(cls=ZooCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oneshot-gan")
def main() -> None:
    """Per-scene models: pull from and push to the Hugging Face Hub, list, inspect, verify, export.

    SCENE is an index name (`zoo list`), org/repo[@revision] or a local entry folder."""


@main.command()
@click.argument("scene")
@click.option("--force", is_flag=True, help="Download every file again (repairs a corrupt cache).")
@click.option("--weights", is_flag=True, help="Also fetch model.safetensors (PyTorch weights, for re-export).")
@click.option("--checkpoint", is_flag=True, help="Also fetch checkpoint/ (the full training state, to resume).")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@hub_options
@user_errors
def pull(scene, force, weights, checkpoint, as_json, quiet, hub, index):
    """Download SCENE into the local cache (once; later uses work offline)."""
    from .index import load_index
    from .scenes import pull as pull_scene

    quiet_downloads(quiet or as_json)
    found = pull_scene(scene, hub, load_index(index, hub), force=force, weights=weights, checkpoint=checkpoint)
    data = {"scene": found.ref.label, "kind": found.ref.kind, "repo": found.ref.repo, "revision": found.commit,
            "path": str(found.path)}
    if as_json:
        click.echo(json.dumps(data))
    elif not quiet:
        where = f"{found.ref.repo}@{found.commit}" if found.commit else f"{found.ref.kind} scene"
        click.echo(f"{data['scene']}: {where} -> {found.path}", err=True)


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def list_cmd(as_json, hub, index):
    """Bundled, indexed and cached scenes, with their size and revision."""
    from .cache import list_scenes
    from .index import load_index
    from .info import plain

    rows = list_scenes(hub, load_index(index, hub))
    if as_json:
        click.echo(json.dumps({"cache": str(hub.cache_dir), "scenes": rows}, indent=2))
        return
    for r in rows:
        where = (r["repo"] + "@" + r["revision"][:12] if r.get("repo") else
                 r["path"] if r["source"] == "local" else "bundled with the package")
        state = "" if r["source"] in ("bundled", "local") else ("pulled" if r["pulled"] else "not pulled")
        click.echo(plain(f"{r['name']:<28} {r['source']:<8} {_size(r['bytes']):>9}  {state:<10}  {where}"))


@main.command()
@click.argument("scene")
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def info(scene, as_json, hub, index):
    """The model card summary, classes, sizes, artifacts, files and hashes of SCENE (no download)."""
    from .index import load_index
    from .info import plain, scene_info

    data = scene_info(scene, hub, load_index(index, hub))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data["summary"].items():
        click.echo(plain(f"{key:<15} {value}"))
    click.echo("files")
    for name, f in data["files"].items():
        click.echo(plain(f"  {name:<32} {_size(f.get('bytes')):>9}  sha256 {f.get('sha256', '?')[:16]}"))


@main.command()
@click.argument("scene")
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def rm(scene, as_json, hub, index):
    """Remove a pulled SCENE from the local cache (org/repo without @revision: every cached revision)."""
    from .cache import remove
    from .index import load_index

    data = remove(scene, hub, load_index(index, hub))
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo(f"removed {scene} ({len(data['revisions'])} revision(s), {_size(data['freed_bytes'])})", err=True)


@main.command()
@click.argument("scene")
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def verify(scene, as_json, hub, index):
    """Check an entry folder or a pulled scene: schema, hashes, model card, ONNX loads, a test sample runs."""
    from .index import load_index
    from .scenes import resolve
    from .verify import verify as verify_scene

    checks = verify_scene(resolve(scene, hub, load_index(index, hub), download=False))
    if as_json:
        click.echo(json.dumps({"scene": scene, "ok": True, **checks}))
    else:
        click.echo(f"{scene}: ok ({len(checks['files'])} files hashed; ONNX {', '.join(checks['onnx'])} load and "
                   "sample)", err=True)


@main.command()
@click.argument("entry_dir", type=click.Path(path_type=Path))
@click.option("--repo", required=True, help="Hub model repo, org/name (created if needed).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", default=None, help="Branch to commit to (created if needed) [main].")
@click.option("--message", default=None, help="Commit message.")
@click.option("--name", default=None, help="Scene name for the printed index line [the repo name].")
@click.option("--json", "as_json", is_flag=True)
@hub_options
@user_errors
def push(entry_dir, repo, private, revision, message, name, as_json, hub, index):
    """Verify ENTRY_DIR and upload it to --repo in one commit; print the commit sha and the index line."""
    from .index import REPO
    from .push import push as push_entry

    if not REPO.match(repo):
        raise UserError(f"--repo must look like org/name, got {repo!r}")
    if hub.offline:
        raise UserError("push needs the network; offline mode is on")
    data = push_entry(entry_dir, repo, hub, private=private, revision=revision, message=message, name=name)
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"pushed {len(data['uploaded'])} files to {repo}@{data['revision']}: commit {data['commit']}")
    click.echo("index line (add under \"scenes\" in your index):")
    click.echo(data["index_line"])


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder of the entries (one per scene).")
@click.option("--push", "push_org", default=None, metavar="ORG",
              help="Push every finished entry to ORG/NAME, and the index to --index-repo.")
@click.option("--index-repo", default=None, metavar="ORG/NAME", help="Where --push puts index.json [ORG/index].")
@click.option("--ray", "use_ray", is_flag=True, help="Run the scenes as Ray tasks (pip install 'oneshot-gan[ray]').")
@click.option("--address", default=None, help="Ray cluster address [$RAY_ADDRESS, else a local Ray instance].")
@click.option("--cpus-per-scene", type=click.IntRange(1), default=1, show_default=True,
              help="With --ray: CPUs each scene's task holds (its training threads).")
@click.option("--gpus-per-scene", type=click.FloatRange(0), default=0, show_default=True,
              help="With --ray: GPUs each scene's task holds (set 1 with `device: cuda` in the manifest).")
@hub_options
@user_errors
def build(manifest, out, push_org, index_repo, use_ray, address, cpus_per_scene, gpus_per_scene, hub, index):
    """Train, evaluate, export (and push) every scene of MANIFEST; run again to skip finished scenes and resume
    the rest. Exit status: the number of scenes that failed (at most 100)."""
    from .build import BuildOptions, build as build_all, summary_table, write_index
    from .index import REPO
    from .manifest import read_manifest
    from .info import plain
    from .push import push_index

    spec = read_manifest(manifest)
    if push_org is not None:
        index_repo = index_repo or f"{push_org}/index"
        if not REPO.match(f"{push_org}/x") or not REPO.match(index_repo):
            raise UserError("--push must be an organisation or user name, and --index-repo org/name")
        if hub.offline:
            raise UserError("--push needs the network; offline mode is on")
    opts = BuildOptions.from_manifest(spec, out, push_org=push_org, hub=hub)
    opts.out.mkdir(parents=True, exist_ok=True)

    def report(name: str, state: str) -> None:
        click.echo(plain(f"{time.strftime('%H:%M:%S')} {name}: {state}"), err=True)

    results = build_all(spec, opts, report, ray=use_ray, address=address, cpus_per_scene=cpus_per_scene,
                        gpus_per_scene=gpus_per_scene)
    path, data = write_index(results, opts.out, pushed_only=push_org is not None)
    click.echo(summary_table(results))
    failed = sum(r["state"] == "failed" for r in results)
    click.echo(f"{len(results) - failed} of {len(results)} scenes built; index of {len(data['scenes'])}: {path}", err=True)
    if push_org is not None and data["scenes"]:
        click.echo(f"index pushed to {index_repo}: commit {push_index(path, index_repo, hub)}", err=True)
    if failed:
        raise SystemExit(min(failed, 100))


if __name__ == "__main__":
    main()
