"""Scene ids -> entry folders: a local folder, a bundled scene, an index name, or `org/repo[@revision]`.

    resolve("coins")                  # bundled with the package: no download
    resolve("balloons")               # index name -> pinned Hub commit, pulled into the HF cache once
    resolve("org/repo@v2")            # any Hub repo holding an entry, at a branch, tag or commit
    resolve("./my-entry")             # a local entry folder (a folder that exists wins over a Hub id)

Every pulled file is checked against the sha256 in the index (when the scene comes from one) and in the
entry's config.json, on download and again whenever it is resolved from the cache.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .entry import Entry, safe_member
from .entry_config import ONNX_FILES
from .errors import UserError
from .files import sha256_file
from .hub import Hub, Unreachable, cached_commit, current_commit, snapshot
from .index import BUNDLED, COMMIT, REPO, IndexEntry, load_index

__all__ = ["DEFAULT_SCENE", "SceneRef", "ResolvedScene", "bundled_scenes", "parse_scene", "check_files", "pull", "resolve"]

DEFAULT_SCENE = "coins"
# What sampling and `trainer eval` need (the training frames are small: runtime.training_frames); weights and the
# training state come only on request.
# exact names; reconstruction.safetensors: SinGAN entries' --start-scale noise (runtime.sampler.RECONSTRUCTION)
SAMPLING_FILES = ["config.json", "README.md", "preview.png", "quality.json", "reconstruction.safetensors",
                  *ONNX_FILES.values()]
TRAINING_FRAMES = ["training/frame-[0-9][0-9][0-9].png", "training/mask-[0-9][0-9][0-9].png"]
WEIGHT_FILES = ["model.safetensors"]
CHECKPOINT_FILES = ["checkpoint/*"]
HUB_ID = re.compile(r"^(?P<repo>[^@\s]+/[^@\s]+?)(?:@(?P<rev>[^@\s]+))?$")


@dataclass(frozen=True)
class SceneRef:
    """A parsed scene id."""

    text: str
    kind: str                      # "local" | "bundled" | "hub"
    path: Path | None = None       # local and bundled scenes
    repo: str | None = None
    revision: str | None = None    # what was asked for (branch, tag or commit); None = main
    name: str | None = None        # index name, if it came from the index
    hashes: dict = field(default_factory=dict)   # file -> sha256 from the index

    @property
    def label(self) -> str:
        return self.name or self.text


@dataclass(frozen=True)
class ResolvedScene:
    """A resolved scene: its entry folder and where it came from (commit = the Hub commit sha)."""

    ref: SceneRef
    entry: Entry
    commit: str | None = None

    @property
    def path(self) -> Path:
        return self.entry.root


def bundled_scenes() -> list[str]:
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "config.json").is_file()) if BUNDLED.is_dir() else []


def patterns(weights: bool = False, checkpoint: bool = False) -> list[str]:
    return SAMPLING_FILES + TRAINING_FRAMES + (WEIGHT_FILES if weights else []) + (CHECKPOINT_FILES if checkpoint else [])


def parse_scene(text: str | None, index: dict[str, IndexEntry] | None = None) -> SceneRef:
    text = str(text) if text is not None else DEFAULT_SCENE
    path = Path(text).expanduser()
    if path.is_dir():
        return SceneRef(text, "local", path=path)
    index = load_index() if index is None else index
    item = index.get(text)
    if item is not None and item.folder is not None:
        return SceneRef(text, "local", path=item.folder, name=text, hashes={k: v["sha256"] for k, v in item.files.items()})
    if item is not None and item.bundled:
        return SceneRef(text, "bundled", path=BUNDLED / item.bundled, name=text,
                        hashes={k: v["sha256"] for k, v in item.files.items()})
    if item is not None:
        return SceneRef(text, "hub", repo=item.repo, revision=item.revision, name=text,
                        hashes={k: v["sha256"] for k, v in item.files.items()})
    if text in bundled_scenes():
        return SceneRef(text, "bundled", path=BUNDLED / text, name=text)
    m = HUB_ID.match(text)
    if m and REPO.match(m["repo"]):
        return SceneRef(text, "hub", repo=m["repo"], revision=m["rev"])
    names = ", ".join(sorted(index)) or "none"
    raise UserError(f"{text}: unknown scene (not a folder, not an index name [{names}], not org/repo[@revision])")


def check_files(folder: Path, ref: SceneRef, wanted: list[str], within: Path | None = None) -> Entry:
    """Every wanted file of the entry in `folder` is present and matches the index and config.json hashes."""
    fix = f"; run `zoo pull --force {ref.text}`" if ref.kind == "hub" else ""
    config = folder / "config.json"
    if not config.exists():
        raise UserError(f"{ref.label}: not a scene entry (no config.json){fix if config.is_symlink() else ''}")
    if within is not None:
        _check_links(folder, within)
    expected = dict(ref.hashes)
    if "config.json" in expected:   # check it before trusting what it says
        _check_hash(folder, "config.json", expected.pop("config.json"), ref.label, fix)
    entry = Entry.load(folder, within=within)
    if ref.kind == "hub" and any(fnmatch.fnmatch("README.md", p) for p in wanted) \
            and "README.md" not in entry.config.files and "README.md" not in ref.hashes:
        raise UserError(f"{ref.label}: README.md has no sha256 in config.json or the index, so it cannot be "
                        "checked (export the entry again with this version, or list it in an index)")
    for name, record in entry.config.files.items():
        if any(fnmatch.fnmatch(name, p) for p in wanted):
            _check_hash(folder, name, record.sha256, ref.label, fix)
            want = expected.pop(name, None)
            if want and want != record.sha256:
                raise UserError(f"{ref.label}: {name} in config.json differs from the index (sha256){fix}")
    for name, want in expected.items():
        if any(fnmatch.fnmatch(name, p) for p in wanted):
            _check_hash(folder, name, want, ref.label, fix)
    return entry


def _check_links(folder: Path, blobs: Path) -> None:
    """Every file of a cached snapshot is a link into its repo's blobs/ (or a plain file in the snapshot)."""
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_dir():
            safe_member(folder, path.relative_to(folder).as_posix(), blobs)


def _check_hash(folder: Path, name: str, want: str | None, label: str, fix: str) -> None:
    path = folder / name
    if not path.exists():
        raise UserError(f"{label}: {name} is missing (incomplete download or deleted from the cache){fix}")
    if want is None:
        raise UserError(f"{label}: config.json lists {name} without a sha256")
    got = sha256_file(path)
    if got != want:
        raise UserError(f"{label}: {name} fails its sha256 check (expected {want[:12]}..., got {got[:12]}...): "
                        f"the file is corrupt or was changed{fix}")


def _cached(ref: SceneRef, hub: Hub, wanted: list[str]) -> ResolvedScene | None:
    """The cached snapshot of a Hub scene, checked, without any network request; None if not cached."""
    commit = cached_commit(ref.repo, ref.revision or "main", hub)
    folder = hub.repo_folder(ref.repo) / "snapshots" / commit if commit else None
    if folder is None or not folder.is_dir():
        return None
    return ResolvedScene(ref, check_files(folder, ref, wanted, within=hub.repo_folder(ref.repo) / "blobs"), commit)


def pull(text: str, hub: Hub | None = None, index: dict | None = None, *, force: bool = False,
         weights: bool = False, checkpoint: bool = False) -> ResolvedScene:
    """Download a Hub scene into the cache (once: a pinned commit already complete makes no request)."""
    hub = hub or Hub.from_env()
    ref = parse_scene(text, index)
    wanted = patterns(weights, checkpoint)
    if ref.kind != "hub":
        return ResolvedScene(ref, check_files(ref.path, ref, wanted))
    pinned = ref.revision is not None and cached_commit(ref.repo, ref.revision, hub) == ref.revision
    if not force and (pinned or hub.offline):
        try:
            scene = _cached(ref, hub, wanted)
        except UserError:
            if hub.offline:
                raise
            scene = None   # incomplete or corrupt: fetch what is missing
        if scene is not None:
            return scene
    if not hub.offline and not COMMIT.match(ref.revision or ""):
        # huggingface_hub falls back to the cached commit of a branch, silently, when the Hub cannot be asked
        try:
            current_commit(ref.repo, ref.revision, hub, ref.label)
        except Unreachable as e:
            scene = None if force else _cached_or_none(ref, hub, wanted)
            if scene is None:
                raise
            warnings.warn(f"{e}; using the cached commit {scene.commit[:12]} of {ref.revision or 'main'}, "
                          "which may be behind")
            return scene
    folder = snapshot(ref.repo, ref.revision, wanted, hub, force=force, what=ref.label)
    return ResolvedScene(ref, check_files(folder, ref, wanted, within=hub.repo_folder(ref.repo) / "blobs"), folder.name)


def _cached_or_none(ref: SceneRef, hub: Hub, wanted: list[str]) -> ResolvedScene | None:
    try:
        return _cached(ref, hub, wanted)
    except UserError:
        return None


def resolve(text: str | None = None, hub: Hub | None = None, index: dict | None = None, *, download: bool = True,
            weights: bool = False) -> ResolvedScene:
    """The entry for a scene id. Hub scenes come from the cache; they are pulled first if `download` and online."""
    hub = hub or Hub.from_env()
    ref = parse_scene(text, index)
    wanted = patterns(weights)
    if ref.kind != "hub":
        return ResolvedScene(ref, check_files(ref.path, ref, wanted) if ref.hashes else Entry.load(ref.path))
    scene = _cached(ref, hub, wanted)
    if scene is not None:
        return scene
    if download and not hub.offline:
        return pull(ref.text, hub, index, weights=weights)
    why = "offline mode is on" if hub.offline else "downloads are off"
    raise UserError(f"{ref.label}: not pulled and {why}; run `zoo pull {ref.text}` online first")
