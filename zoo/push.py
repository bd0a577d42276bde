"""`zoo push`: publish a verified entry folder as one commit of a Hub model repo."""

from __future__ import annotations

from pathlib import Path

from .entry import Entry, safe_member
from .hub import Hub, hub_exceptions, hub_error
from .index import index_line
from .files import sha256_file
from .scenes import ResolvedScene, SceneRef
from .verify import verify


def entry_files(entry: Entry) -> list[str]:
    return sorted({"config.json", "README.md", *entry.config.files})


def push(entry_dir: Path, repo: str, hub: Hub, *, private: bool = False, revision: str | None = None,
         message: str | None = None, name: str | None = None, api=None) -> dict:
    """Create the repo if needed and commit exactly the entry's files (removing others) in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    entry_dir = Path(entry_dir)
    entry = Entry.load(entry_dir)
    verify(ResolvedScene(SceneRef(str(entry_dir), "local", path=entry_dir), entry))
    files = entry_files(entry)
    for file in files:   # config.json and README.md too: a link out of the folder would upload another file
        safe_member(entry_dir, file)
    api = api or HfApi(endpoint=hub.endpoint, token=hub.token)
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True)
        stale = [f for f in api.list_repo_files(repo, revision=revision) if f not in files and f != ".gitattributes"]
        operations = ([CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(entry_dir / f)) for f in files]
                      + [CommitOperationDelete(path_in_repo=f) for f in stale])
        info = api.create_commit(repo, operations=operations, revision=revision,
                                 commit_message=message or f"Upload scene entry ({', '.join(entry.precisions())})")
    except hub_exceptions() as e:
        raise hub_error(e, f"push to {repo}", hub) from None
    hashes = {f: {"sha256": sha256_file(entry_dir / f), "bytes": (entry_dir / f).stat().st_size} for f in files}
    scene_name = name or repo.split("/")[1].lower()
    return {"repo": repo, "revision": revision or "main", "commit": info.oid, "url": getattr(info, "commit_url", None),
            "uploaded": files, "deleted": stale, "index_line": index_line(scene_name, repo, info.oid, hashes)}


def push_index(path: Path, repo: str, hub: Hub, *, api=None) -> str:
    """Commit an index file as index.json of `repo` (created if needed); returns the commit sha."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi(endpoint=hub.endpoint, token=hub.token)
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        info = api.create_commit(repo, operations=[CommitOperationAdd(path_in_repo="index.json",
                                                                      path_or_fileobj=str(path))],
                                 commit_message="Update the scene index")
    except hub_exceptions() as e:
        raise hub_error(e, f"push to {repo}", hub) from None
    return info.oid
