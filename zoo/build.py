"""`zoo build MANIFEST`: train, evaluate, export and optionally push every scene of a manifest (zoo.manifest),
one after another here or as Ray tasks on a cluster, then write an index.json of every finished entry.

Each scene runs the project's own commands (`trainer fit`/`resume`, `trainer eval`, `zoo export`) as child
processes: the zoo stays free of torch, a scene's crash or bad input stays that scene's, and its error is the
one line the command printed. What a scene has done is kept under OUT/.build/NAME/ (the training run, the
evaluation, result.json), so the same command run again skips finished scenes (their entry's files match the
hashes recorded when it was built) and resumes interrupted ones from their last checkpoint. On a cluster OUT
must be a folder every node sees (a shared filesystem): a task Ray retries after losing a node resumes there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .entry import Entry
from .errors import UserError
from .files import atomic_write, sha256_file
from .manifest import Manifest, SceneSpec
from .scenes import SceneRef, check_files

__all__ = ["BuildOptions", "build", "build_scene", "summary_table", "write_index"]

WORK = ".build"
RAY_RETRIES = 3   # system failures only (a lost node, a killed worker): a scene's own error is not retried

Report = Callable[[str, str], None]


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    eval_args: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32", "int8")
    push_org: str | None = None
    hub: object | None = None   # zoo.hub.Hub, for pushing
    threads: int | None = None  # per scene (OMP/torch threads of its commands)

    @classmethod
    def from_manifest(cls, manifest: Manifest, out: Path, **kwargs) -> "BuildOptions":
        return cls(Path(out).resolve(), tuple(manifest.eval_args()), manifest.precisions, **kwargs)


class SceneFailed(Exception):
    """One scene's step failed; the message is the one line its command printed."""


def build_scene(spec: SceneSpec, opts: BuildOptions, report: Report) -> dict:
    """Build one scene; never raises for the scene's own failures: returns its record (state failed + error)."""
    work, entry_dir = opts.out / WORK / spec.name, opts.out / spec.name
    start = time.perf_counter()
    record = _finished_record(work / "result.json", entry_dir)
    state = "skipped" if record else "finished"
    try:
        if record is None:
            work.mkdir(parents=True, exist_ok=True)
            record = _build(spec, opts, work, entry_dir, report)
        repo = f"{opts.push_org}/{spec.name}" if opts.push_org else None
        if repo and (record.get("pushed") or {}).get("repo") != repo:
            report(spec.name, f"pushing to {repo}")
            record["pushed"] = _push(entry_dir, repo, opts.hub)
            _save(work, record)
            state = "finished"
    except (SceneFailed, UserError, OSError) as e:
        message = str(e) if not isinstance(e, OSError) else f"{e.filename or ''}: {e.strerror or e}"
        failed = {"name": spec.name, "state": "failed", "error": message.strip().removeprefix("error: "),
                  "minutes": round((time.perf_counter() - start) / 60, 2)}
        report(spec.name, f"failed: {failed['error']}")
        return failed
    report(spec.name, "skipped (already built)" if state == "skipped" else "finished")
    return {**record, "state": state}


def _build(spec: SceneSpec, opts: BuildOptions, work: Path, entry_dir: Path, report: Report) -> dict:
    env = _env(opts.threads)
    run = work / "run"
    t0 = time.perf_counter()
    if (run / "config.json").is_file():
        report(spec.name, "resuming training")
        _cli("trainer.cli", ["resume", run, "-q"], env)
    else:
        if run.exists():   # a fit that stopped before writing its run (our own scratch folder)
            shutil.rmtree(run)
        report(spec.name, "training")
        _cli("trainer.cli", ["fit", spec.source, "--out", run, "-q", *spec.fit_args()], env)
    minutes = (time.perf_counter() - t0) / 60
    report(spec.name, "evaluating")
    evaluation = work / "eval.json"
    result = json.loads(_cli("trainer.cli", ["eval", run, "--json", "-q", *opts.eval_args], env))
    atomic_write(evaluation, json.dumps(result, indent=2) + "\n")
    report(spec.name, "exporting")
    precision_args = [a for p in opts.precisions for a in ("--precision", p)]
    _cli("zoo.cli", ["export", run, "--out", entry_dir, "--overwrite", "-q", "--evaluation", evaluation,
                     *precision_args, *spec.card_args()], env)
    entry = Entry.load(entry_dir)
    record = {"name": spec.name, "iterations": entry.config.iterations, "training_minutes": round(minutes, 2),
              "evaluation": _key_numbers(result), "config_sha256": sha256_file(entry_dir / "config.json"),
              "files": _file_hashes(entry_dir, entry)}
    _save(work, record)
    return record


def _finished_record(path: Path, entry_dir: Path) -> dict | None:
    """The scene's record when its entry is there and every file matches what was built; else None."""
    try:
        record = json.loads(path.read_text())
        if record.get("config_sha256") != sha256_file(entry_dir / "config.json"):
            return None
        check_files(entry_dir, SceneRef(str(entry_dir), "local", path=entry_dir,
                                        hashes={k: v["sha256"] for k, v in record["files"].items()}), ["*"])
        return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
        return None


def _save(work: Path, record: dict) -> None:
    atomic_write(work / "result.json", json.dumps(record, indent=2) + "\n")


def _file_hashes(entry_dir: Path, entry: Entry) -> dict:
    from .push import entry_files

    return {f: {"sha256": sha256_file(entry_dir / f), "bytes": (entry_dir / f).stat().st_size}
            for f in entry_files(entry)}


def _key_numbers(result: dict) -> dict:
    numbers = {"samples": result["samples"], "pixel_diversity": result["diversity"]["pixel_diversity"],
               "ms_ssim": round(result["diversity"]["ms_ssim"]["mean"], 4),
               "near_copies": result["memorisation"]["near_copies"],
               "quality_median": result["quality_score"]["median"]}
    if "mask_alignment" in result:
        numbers["miou"] = result["mask_alignment"]["miou"]
        numbers["class_tv"] = result["class_frequencies"]["total_variation"]
    return numbers


def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _cli(module: str, args: list, env: dict) -> str:
    with subprocess.Popen([sys.executable, "-m", module, *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env) as proc:
        try:
            stdout, stderr = proc.communicate()
        except KeyboardInterrupt:   # the child had the same Ctrl-C: let it save its checkpoint (subprocess.run
            proc.communicate()      # would kill it after 0.25 s)
            raise
    if proc.returncode != 0:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        what = " ".join(str(a) for a in args[:1])
        raise SceneFailed(lines[-1] if lines else f"`{module.split('.')[0]} {what}` exited with {proc.returncode}")
    return stdout


def _push(entry_dir: Path, repo: str, hub) -> dict:
    from .push import push

    data = push(entry_dir, repo, hub)
    return {"repo": repo, "commit": data["commit"]}


# -- the whole job ---------------------------------------------------------------------------------------------

def build(manifest: Manifest, opts: BuildOptions, report: Report, *, ray: bool = False,
          address: str | None = None, cpus_per_scene: int = 1, gpus_per_scene: float = 0) -> list[dict]:
    """Every scene, in manifest order for the results; one after another, or as Ray tasks."""
    if not ray:
        return [build_scene(spec, opts, report) for spec in manifest.scenes]
    return _build_on_ray(manifest, opts, report, address=address, cpus=cpus_per_scene, gpus=gpus_per_scene)


def _build_on_ray(manifest: Manifest, opts: BuildOptions, report: Report, *, address, cpus: int,
                  gpus: float) -> list[dict]:
    from .ray_session import connect

    started = connect(address)
    import ray
    from ray.util.queue import Empty, Queue

    try:
        queue = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(_scene_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_RETRIES,
                                               retry_exceptions=False)
        opts = replace(opts, threads=opts.threads or cpus)
        pending = {task.remote(spec, opts, queue): spec.name for spec in manifest.scenes}
        for spec in manifest.scenes:
            report(spec.name, "queued")
        results = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            _drain(queue, report, Empty)
            for ref in ready:
                name = pending.pop(ref)
                try:
                    results[name] = ray.get(ref)
                except ray.exceptions.RayError as e:   # retries exhausted (nodes lost), or the task itself broke
                    error = str(e).strip().splitlines()[0][:300]
                    report(name, f"failed: {error}")
                    results[name] = {"name": name, "state": "failed", "error": error}
        _drain(queue, report, Empty)
        return [results[spec.name] for spec in manifest.scenes]
    finally:
        if started:
            ray.shutdown()


def _scene_task(spec: SceneSpec, opts: BuildOptions, queue) -> dict:
    return build_scene(spec, opts, lambda name, state: queue.put((name, state)))


def _drain(queue, report: Report, empty) -> None:
    while True:
        try:
            name, state = queue.get_nowait()
        except empty:
            return
        report(name, state)


def write_index(results: list[dict], out: Path, *, pushed_only: bool) -> tuple[Path, dict]:
    """OUT/index.json over every finished entry: pushed ones by repo and commit, the others by their folder
    (an index a local `--index OUT/index.json` reads); with pushed_only, only the pushed ones (for the Hub)."""
    from .index import INDEX_FORMAT, parse_index

    scenes = {}
    for r in results:
        if r["state"] not in ("finished", "skipped"):
            continue
        if r.get("pushed"):
            scenes[r["name"]] = {"repo": r["pushed"]["repo"], "revision": r["pushed"]["commit"], "files": r["files"]}
        elif not pushed_only:
            scenes[r["name"]] = {"path": r["name"], "files": r["files"]}
    data = {"format": INDEX_FORMAT, "scenes": scenes}
    parse_index(data, "index.json", base=out)   # never write an index the zoo would refuse
    path = out / "index.json"
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path, data


def summary_table(results: list[dict]) -> str:
    rows = [("scene", "state", "iters", "min", "div", "mIoU", "copies", "commit / error")]
    for r in results:
        e = r.get("evaluation") or {}
        rows.append((r["name"], r["state"], str(r.get("iterations") or "-"),
                     f"{r['training_minutes']:.1f}" if "training_minutes" in r else "-",
                     f"{e['pixel_diversity']:.2f}" if "pixel_diversity" in e else "-",
                     f"{e['miou']:.1f}" if "miou" in e else "-",
                     f"{100 * e['near_copies']:.0f} %" if "near_copies" in e else "-",
                     r.get("error") or (r.get("pushed") or {}).get("commit", "")[:12] or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows)
