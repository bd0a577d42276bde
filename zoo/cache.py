"""What is available locally (`zoo list`) and removing pulled scenes (`zoo rm`), on the standard HF cache."""

from __future__ import annotations


from .entry_config import is_entry_config
from .errors import UserError
from .hub import Hub, cached_commit
from .index import IndexEntry
from .scenes import BUNDLED, parse_scene


def _cached_entries(hub: Hub) -> list[dict]:
    """Every cached model-repo revision whose snapshot holds a scene entry's config.json."""
    from huggingface_hub import scan_cache_dir

    if not hub.cache_dir.is_dir():
        return []
    rows = []
    for repo in scan_cache_dir(hub.cache_dir).repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            if not is_entry_config(rev.snapshot_path / "config.json"):
                continue
            rows.append({"repo": repo.repo_id, "revision": rev.commit_hash, "refs": sorted(rev.refs),
                         "bytes": rev.size_on_disk, "path": str(rev.snapshot_path)})
    return rows


def list_scenes(hub: Hub, index: dict[str, IndexEntry]) -> list[dict]:
    cached = _cached_entries(hub)
    rows = []
    for name, item in sorted(index.items()):
        size = sum(f.get("bytes", 0) for f in item.files.values())
        if item.bundled:
            rows.append({"name": name, "source": "bundled", "repo": None, "revision": None, "pulled": True,
                         "bytes": size, "path": str(BUNDLED / item.bundled), "description": item.description})
            continue
        if item.folder is not None:
            rows.append({"name": name, "source": "local", "repo": None, "revision": None, "pulled": True,
                         "bytes": size, "path": str(item.folder), "description": item.description})
            continue
        hit = next((c for c in cached if (c["repo"], c["revision"]) == (item.repo, item.revision)), None)
        rows.append({"name": name, "source": "index", "repo": item.repo, "revision": item.revision,
                     "pulled": hit is not None, "bytes": hit["bytes"] if hit else size,
                     "path": hit["path"] if hit else None, "description": item.description})
    listed = {(r["repo"], r["revision"]) for r in rows}
    for c in cached:
        if (c["repo"], c["revision"]) not in listed:
            rows.append({"name": f"{c['repo']}@{c['revision'][:12]}", "source": "cache", "pulled": True,
                         "description": "refs: " + (", ".join(c["refs"]) or "none"), **c})
    return rows


def remove(text: str, hub: Hub, index: dict[str, IndexEntry]) -> dict:
    """Delete a pulled scene's revision (or, for `org/repo` without @revision, every cached revision)."""
    from huggingface_hub import scan_cache_dir

    ref = parse_scene(text, index)
    if ref.kind == "local":
        raise UserError(f"{text}: is a local folder, not a pulled scene; delete it yourself if you mean to")
    if ref.kind == "bundled":
        raise UserError(f"{text}: is bundled with the package and cannot be removed")
    repo = next((r for r in (scan_cache_dir(hub.cache_dir).repos if hub.cache_dir.is_dir() else [])
                 if r.repo_id == ref.repo and r.repo_type == "model"), None)
    commits = [r.commit_hash for r in repo.revisions] if repo else []
    if ref.revision is not None:
        commit = cached_commit(ref.repo, ref.revision, hub)
        commits = [c for c in commits if c == commit]
    if not commits:
        raise UserError(f"{text}: not in the cache ({hub.cache_dir})")
    strategy = scan_cache_dir(hub.cache_dir).delete_revisions(*commits)
    strategy.execute()
    return {"scene": text, "repo": ref.repo, "revisions": commits, "freed_bytes": strategy.expected_freed_size}
