"""Reading a scene entry folder (no torch): config.json validated on load, artifact paths kept inside the folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .index import check_member_name

ENTRY_FORMAT = "oneshot-gan-entry/1"
ONNX_FILES = {"fp32": "onnx/generator.onnx", "fp16": "onnx/generator.fp16.onnx", "int8": "onnx/generator.int8.onnx"}


def _need(cond: bool, where: Path, what: str) -> None:
    if not cond:
        raise UserError(f"{where}: {what}")


def _int_pair(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def safe_member(root: Path, name: str, within: Path | None = None) -> Path:
    """root/name, refusing absolute paths, '..' and symlinks that lead outside root (or `within`: a Hub cache
    snapshot's files are links into its repo folder's blobs/)."""
    check_member_name(name, str(root))
    path = root / name
    real = path.resolve()
    # where the cache cannot use links, a snapshot holds plain files
    plain = within is not None and not path.is_symlink() and real.is_relative_to(root.resolve())
    if not (real.is_relative_to((within or root).resolve()) or plain):
        raise UserError(f"{root}: {name} points outside the {'cache' if within else 'entry folder'}")
    return path


@dataclass(frozen=True)
class Entry:
    root: Path
    config: dict
    within: Path | None = None   # where the entry's symlinks may lead (None: inside root)

    @classmethod
    def load(cls, root: Path, within: Path | None = None) -> "Entry":
        root = Path(root)
        path = root / "config.json"
        if not root.is_dir():
            raise UserError(f"{root}: not a scene folder")
        if not path.is_file():
            raise UserError(f"{root}: no config.json (not a scene entry)")
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        validate(config, path)
        for name in config["files"]:
            safe_member(root, name, within)
        return cls(root, config, within)

    @property
    def noise_dim(self) -> int:
        return self.config["model"]["noise_dim"]

    @property
    def trained_grid(self) -> tuple[int, int]:
        return tuple(self.config["latent"]["trained_grid"])

    @property
    def pixels_per_cell(self) -> int:
        return self.config["latent"]["pixels_per_cell"]

    @property
    def grid_bounds(self) -> tuple[tuple[int, int], tuple[int, int]]:
        b = self.config["latent"]["grid_bounds"]
        return tuple(b["min"]), tuple(b["max"])

    @property
    def class_names(self) -> list[str]:
        return self.config["classes"]["names"]

    @property
    def palette(self) -> list[list[int]]:
        return self.config["classes"]["palette"]

    @property
    def has_masks(self) -> bool:
        return "mask" in self.config["outputs"]

    def precisions(self) -> list[str]:
        return [p for p, name in ONNX_FILES.items() if name in self.config["files"]]

    def onnx_path(self, precision: str) -> Path:
        name = ONNX_FILES.get(precision)
        if name is None or name not in self.config["files"]:
            have = ", ".join(self.precisions()) or "none"
            raise UserError(f"{self.root}: no {precision} model in this entry (has: {have})")
        path = safe_member(self.root, name, self.within)
        if not path.is_file():
            raise UserError(f"{path}: missing (the entry is incomplete)")
        return path


def validate(config: dict, where: Path) -> None:
    """One-line errors for a config.json that the runtime cannot use."""
    _need(isinstance(config, dict), where, "expected a JSON object")
    _need(config.get("format") == ENTRY_FORMAT, where, f"unknown format {config.get('format')!r} (expected {ENTRY_FORMAT})")
    for key in ("model", "latent", "outputs", "classes", "files"):
        _need(isinstance(config.get(key), dict), where, f"missing or invalid '{key}'")
    model, latent = config["model"], config["latent"]
    _need(isinstance(model.get("noise_dim"), int) and model["noise_dim"] > 0, where, "model.noise_dim must be a positive int")
    _need(_int_pair(latent.get("trained_grid")), where, "latent.trained_grid must be [h, w]")
    _need(isinstance(latent.get("pixels_per_cell"), int) and latent["pixels_per_cell"] > 0, where,
          "latent.pixels_per_cell must be a positive int")
    bounds = latent.get("grid_bounds")
    _need(isinstance(bounds, dict) and _int_pair(bounds.get("min")) and _int_pair(bounds.get("max")), where,
          "latent.grid_bounds must hold min and max [h, w]")
    _need("image" in config["outputs"], where, "outputs.image missing")
    classes = config["classes"]
    _need(isinstance(classes.get("names"), list) and isinstance(classes.get("palette"), list), where,
          "classes.names and classes.palette must be lists")
    if "mask" in config["outputs"]:
        _need(len(classes["names"]) >= 2 and len(classes["palette"]) == len(classes["names"]), where,
              "a mask model needs one name and one palette colour per class")
    for name, info in config["files"].items():
        _need(isinstance(name, str) and isinstance(info, dict), where, "files must map names to objects")
