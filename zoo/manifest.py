"""The one owner of `zoo build`'s MANIFEST (JSON or YAML): the scenes to train, evaluate, export and push.

    defaults:                  # optional: trainer fit options for every scene
      iters: 4500
    eval: {samples: 100, unet-steps: 500}      # optional: trainer eval options
    precisions: [fp32, int8]                   # optional: zoo export --precision
    scenes:
      - name: balloons                         # the entry's folder, index name and Hub repo name
        image: balloons/image.png              # or frames: FOLDER, or video: FILE (paths relative to MANIFEST)
        mask: balloons/mask.png                # optional: a mask, or a folder of masks
        classes: balloons/classes.txt          # optional
        license: cc-by-4.0                     # the model card's licence id
        image_license: CC BY 4.0               # the training image's licence, recorded in the model card
        source: https://example.org/balloons   # optional: where the image comes from
        title: Balloons over a meadow          # optional
        training_data: false                   # optional: leave the frames out of the entry (private images)
        train: {seed: 1, max-size: 112}       # optional: trainer fit options, over the defaults
      - name: valley-singan
        image: valley/image.png
        train: {arch: singan, width: null}     # null: leave out a default (SinGAN takes no --width)

Trainer options are `trainer fit`'s long options without the dashes; values are strings, numbers or booleans
(true = the flag); in a scene's train, null drops an option of the defaults. Everything is checked here, before
any scene starts, so a typo fails in a second, not after an hour of training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .index import NAME

__all__ = ["Manifest", "SceneSpec", "read_manifest"]

OPTION = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
RESERVED = {"out", "overwrite", "quiet", "q", "mask", "classes"}   # set by the build from the scene's fields
SOURCES = ("image", "frames", "video")
SCENE_KEYS = {"name", *SOURCES, "mask", "classes", "license", "image_license", "source", "title", "training_data",
              "train"}
TOP_KEYS = {"defaults", "eval", "precisions", "scenes"}
EVAL_OPTIONS = {"samples", "unet-steps", "seed"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class SceneSpec:
    name: str
    source: Path
    mask: Path | None = None
    classes: Path | None = None
    license: str = "other"
    image_license: str | None = None
    source_url: str | None = None
    title: str | None = None
    training_data: bool = True
    train: dict = field(default_factory=dict)

    def fit_args(self) -> list[str]:
        """`trainer fit` arguments after SOURCE, without --out."""
        args = [*_options(self.train)]
        if self.mask is not None:
            args += ["--mask", str(self.mask)]
        if self.classes is not None:
            args += ["--classes", str(self.classes)]
        return args

    def card_args(self) -> list[str]:
        """`zoo export` model-card arguments."""
        pairs = (("--title", self.title), ("--source", self.source_url or str(self.source.name)),
                 ("--image-license", self.image_license), ("--license", self.license))
        return [a for flag, value in pairs if value for a in (flag, value)] + \
            ([] if self.training_data else ["--no-training-data"])


@dataclass(frozen=True)
class Manifest:
    path: Path
    scenes: tuple[SceneSpec, ...]
    eval: dict
    precisions: tuple[str, ...]

    def eval_args(self) -> list[str]:
        return _options(self.eval)


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    data = _parse(path, text)
    _need(isinstance(data, dict), path, "expected a mapping with a 'scenes' list")
    _need(not (set(data) - TOP_KEYS), path, f"unknown key(s) {sorted(set(data) - TOP_KEYS)} (known: {sorted(TOP_KEYS)})")
    defaults = _option_map(data.get("defaults", {}), path, "defaults")
    ev = _option_map(data.get("eval", {}), path, "eval")
    _need(not (set(ev) - EVAL_OPTIONS), path, f"eval: unknown option(s) {sorted(set(ev) - EVAL_OPTIONS)}")
    precisions = data.get("precisions", ["fp32", "int8"])
    _need(isinstance(precisions, list) and precisions and all(p in PRECISIONS for p in precisions), path,
          f"precisions must be a list from {list(PRECISIONS)}")
    scenes = data.get("scenes")
    _need(isinstance(scenes, list) and scenes, path, "'scenes' must be a non-empty list")
    specs = tuple(_scene(path, i, item, defaults) for i, item in enumerate(scenes))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    _need(not dup, path, f"scene name(s) used twice: {', '.join(dup)}")
    return Manifest(path, specs, ev, tuple(precisions))


def _parse(path: Path, text: str):
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
    try:
        import yaml
    except ImportError:
        raise UserError(f"{path}: a YAML manifest needs PyYAML (pip install pyyaml), or write it as .json") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: not valid YAML ({' '.join(first[:3])[:200]})") from None


def _scene(path: Path, i: int, item, defaults: dict) -> SceneSpec:
    where = f"{path}: scenes[{i}]"
    _need(isinstance(item, dict), where, "must be a mapping")
    name = item.get("name")
    _need(isinstance(name, str) and bool(NAME.match(name)), where,
          f"name {name!r} must be lower-case letters, digits, '.', '_' or '-' (at most 64)")
    where = f"{path}: scene {name}"
    _need(not (set(item) - SCENE_KEYS), where, f"unknown key(s) {sorted(set(item) - SCENE_KEYS)}")
    given = [k for k in SOURCES if k in item]
    _need(len(given) == 1, where, f"needs exactly one of {', '.join(SOURCES)}")
    for key in ("license", "image_license", "source", "title"):
        _need(item.get(key) is None or isinstance(item[key], str), where, f"{key} must be a string")
    _need(isinstance(item.get("training_data", True), bool), where, "training_data must be true or false")
    train = {**defaults, **_option_map(item.get("train", {}), where, "train", drop=True)}
    train = {k: v for k, v in train.items() if v is not None}
    return SceneSpec(name=name, source=_path(path, item[given[0]], where, given[0]),
                     mask=_path(path, item["mask"], where, "mask") if item.get("mask") is not None else None,
                     classes=_path(path, item["classes"], where, "classes") if item.get("classes") is not None else None,
                     license=item.get("license") or "other", image_license=item.get("image_license"),
                     source_url=item.get("source"), title=item.get("title"),
                     training_data=item.get("training_data", True), train=train)


def _path(manifest: Path, value, where: str, key: str) -> Path:
    """Relative to the manifest's folder. Existence is the trainer's to check: a missing file fails that scene."""
    _need(isinstance(value, str) and value.strip() != "", where, f"{key} must be a path")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else manifest.parent / p).resolve()


def _option_map(value, where, what: str, *, drop: bool = False) -> dict:
    """drop: None is allowed and means "not this option" (a scene leaving out one of the defaults)."""
    _need(isinstance(value, dict), where, f"{what} must be a mapping of option: value")
    for key, v in value.items():
        _need(isinstance(key, str) and bool(OPTION.match(key)), where, f"{what}: {key!r} is not an option name")
        _need(key not in RESERVED, where, f"{what}: --{key} is set by zoo build")
        _need((drop and v is None) or (isinstance(v, (str, int, float, bool))
                                       and not (isinstance(v, str) and v.startswith("-"))), where,
              f"{what}: {key} must be a string, number or boolean{' (or null)' if drop else ''}")
    return dict(value)


def _options(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        if value is True:
            args.append(f"--{key}")
        elif value is False:
            args.append(f"--no-{key}")
        else:
            args += [f"--{key}", str(value)]
    return args


def _need(cond: bool, where, what: str) -> None:
    if not cond:
        raise UserError(f"{where}: {what}")
