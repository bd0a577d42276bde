"""The scene index: names -> (Hub repo, pinned commit, sha256 per file), or a scene bundled with the package.

The package ships `zoo/index.json`. `--index PATH_OR_URL` or $ONESHOT_GAN_INDEX adds a shared index on top of
it (a local JSON file, or a JSON file in a Hub repo: `hf://org/repo[@revision]/path/index.json` or its
`https://<endpoint>/org/repo/resolve/<revision>/path` URL); its names win over the shipped ones.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

INDEX_FORMAT = "oneshot-gan-index/1"
SHIPPED = Path(__file__).with_name("index.json")
BUNDLED = Path(__file__).with_name("scenes")
INDEX_ENV = "ONESHOT_GAN_INDEX"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
HF_URL = re.compile(r"^hf://(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<path>.+)$")
RESOLVE_URL = re.compile(r"^(?P<endpoint>https?://[^/]+)/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class IndexEntry:
    name: str
    repo: str | None = None          # None for bundled scenes
    revision: str | None = None      # 40-hex commit for Hub scenes
    bundled: str | None = None       # folder name under zoo/scenes
    folder: Path | None = None       # an entry folder beside a local index file (`zoo build` writes such indexes)
    files: dict = field(default_factory=dict)   # name -> {"sha256": ..., "bytes": ...}
    description: str = ""


def check_member_name(name: str, where: str) -> None:
    """File names in an index or entry stay inside the entry folder."""
    if not isinstance(name, str) or any(ord(c) < 32 for c in name):
        raise UserError(f"{where}: file name {name!r} is not a plain relative path")
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"{where}: file name {name!r} escapes the entry folder")


def _parse_entry(name: str, item, where: str, base: Path | None = None) -> IndexEntry:
    if not NAME.match(name):
        raise UserError(f"{where}: scene name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(item, dict):
        raise UserError(f"{where}: scene {name!r} must be an object")
    files = item.get("files", {})
    if not isinstance(files, dict):
        raise UserError(f"{where}: scene {name!r}: files must map names to {{sha256, bytes}}")
    for fname, info in files.items():
        check_member_name(fname, where)
        if not isinstance(info, dict) or not SHA256.match(str(info.get("sha256", ""))):
            raise UserError(f"{where}: scene {name!r}: {fname} needs a 64-hex sha256")
    if item.get("bundled"):
        bundled = item["bundled"]
        if not isinstance(bundled, str) or not NAME.match(bundled) or not (BUNDLED / bundled / "config.json").is_file():
            raise UserError(f"{where}: scene {name!r}: bundled must name a scene shipped with the package, got {bundled!r}")
        return IndexEntry(name, bundled=str(item["bundled"]), files=files, description=item.get("description", ""))
    if "path" in item and "repo" not in item:
        if base is None:
            raise UserError(f"{where}: scene {name!r}: a path entry is only allowed in a local index file")
        check_member_name(item["path"], where)
        if "config.json" not in files:
            raise UserError(f"{where}: scene {name!r}: files must include config.json's sha256")
        return IndexEntry(name, folder=base / item["path"], files=files, description=item.get("description", ""))
    repo, revision = item.get("repo"), item.get("revision")
    if not isinstance(repo, str) or not REPO.match(repo):
        raise UserError(f"{where}: scene {name!r}: repo must look like org/name, got {repo!r}")
    if not isinstance(revision, str) or not COMMIT.match(revision):
        raise UserError(f"{where}: scene {name!r}: revision must be a pinned 40-hex commit, got {revision!r}")
    if "config.json" not in files:
        raise UserError(f"{where}: scene {name!r}: files must include config.json's sha256")
    return IndexEntry(name, repo, revision, files=files, description=item.get("description", ""))


def parse_index(data, where: str, base: Path | None = None) -> dict[str, IndexEntry]:
    """base: the folder of a local index file, which may list entries by path relative to it."""
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("scenes"), dict):
        raise UserError(f"{where}: not a scene index (expected {{\"format\": \"{INDEX_FORMAT}\", \"scenes\": {{...}}}})")
    return {name: _parse_entry(name, item, where, base) for name, item in data["scenes"].items()}


def _read_json(path: Path, where: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{where}: index file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{where}: not a readable JSON index ({e})") from None


def _fetch_hub_json(source: str, hub) -> Path:
    m = HF_URL.match(source)
    if m:
        repo, rev, path, endpoint = m["repo"], m["rev"], m["path"], None
    else:
        m = RESOLVE_URL.match(source)
        repo, rev, path, endpoint = m["repo"], m["rev"], m["path"], m["endpoint"]
    from .hub import download_file

    return download_file(repo, path, rev, hub, endpoint=endpoint, what=f"index {source}")


def load_index(extra: str | None = None, hub=None) -> dict[str, IndexEntry]:
    """The shipped index, updated by `extra` (or $ONESHOT_GAN_INDEX) when given."""
    index = parse_index(_read_json(SHIPPED, str(SHIPPED)), str(SHIPPED))
    extra = extra or os.environ.get(INDEX_ENV) or None
    if extra:
        if HF_URL.match(extra) or RESOLVE_URL.match(extra):
            index.update(parse_index(_read_json(_fetch_hub_json(extra, hub), extra), extra))
        else:
            path = Path(extra).expanduser()
            index.update(parse_index(_read_json(path, extra), extra, base=path.resolve().parent))
    return index


def index_line(name: str, repo: str, revision: str, files: dict) -> str:
    """The JSON snippet to add under "scenes" in an index for a pushed entry."""
    item = {"repo": repo, "revision": revision, "files": files}
    return json.dumps({name: item}, indent=2)[2:-2]
