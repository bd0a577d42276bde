"""Reading a scene entry folder (no torch): config.json validated on load, artifact paths kept inside the folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .index import check_member_name

ENTRY_FORMAT = "oneshot-gan-entry/1"
MAX_GRID = 64   # latent cells per side; the runtime allocates grid x pixels_per_cell pixels per sample
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ONNX_FILES = {"fp32": "onnx/generator.onnx", "fp16": "onnx/generator.fp16.onnx", "int8": "onnx/generator.int8.onnx"}


def _need(cond: bool, where: Path, what: str) -> None:
    if not cond:
        raise UserError(f"{where}: {what}")


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
        except RecursionError:
            raise UserError(f"{path}: nested too deeply to be a scene entry") from None
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


def _int(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _int_pair(value, lo: int = 1, hi: int = MAX_GRID) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_int(v, lo, hi) for v in value)


def validate(config: dict, where: Path) -> None:
    """One schema check of config.json (types, ranges, sizes) used by every command: one-line errors for a
    config the runtime cannot use, whether damaged or made up by a hostile server."""
    _need(isinstance(config, dict), where, "expected a JSON object")
    _need(config.get("format") == ENTRY_FORMAT, where, f"unknown format {config.get('format')!r} (expected {ENTRY_FORMAT})")
    for key in ("model", "latent", "outputs", "classes", "files", "training"):
        _need(isinstance(config.get(key), dict), where, f"missing or invalid '{key}'")
    model, latent = config["model"], config["latent"]
    _need(_int(model.get("noise_dim"), 1, 4096), where, "model.noise_dim must be an int in 1..4096")
    _need(_int_pair(latent.get("trained_grid")), where, f"latent.trained_grid must be [h, w] within 1..{MAX_GRID}")
    ppc = latent.get("pixels_per_cell")
    _need(_int(ppc, 1, 1024) and ppc & (ppc - 1) == 0, where, "latent.pixels_per_cell must be a power of 2 up to 1024")
    bounds = latent.get("grid_bounds")
    _need(isinstance(bounds, dict) and _int_pair(bounds.get("min")) and _int_pair(bounds.get("max"))
          and all(bounds["min"][k] <= latent["trained_grid"][k] <= bounds["max"][k] for k in (0, 1)), where,
          f"latent.grid_bounds must hold min <= trained_grid <= max, each [h, w] within 1..{MAX_GRID}")
    _need(_int_pair(config["training"].get("size"), 1, MAX_GRID * 1024), where, "training.size must be [h, w]")
    _need(config["training"]["size"] == [v * ppc for v in latent["trained_grid"]], where,
          "training.size must be trained_grid x pixels_per_cell")
    _need(isinstance(config["outputs"].get("image"), dict), where, "outputs.image missing")
    classes = config["classes"]
    names, palette = classes.get("names"), classes.get("palette")
    _need(isinstance(names, list) and len(names) <= 255 and all(isinstance(n, str) and 0 < len(n) <= 200
                                                               for n in names),
          where, "classes.names must be a list of at most 255 names")
    _need(isinstance(palette, list) and all(isinstance(c, list) and len(c) == 3
                                            and all(_int(v, 0, 255) for v in c) for c in palette),
          where, "classes.palette must be a list of [r, g, b] colours in 0..255")
    if "mask" in config["outputs"]:
        _need(len(names) >= 2 and len(palette) == len(names), where,
              "a mask model needs one name and one palette colour per class")
    for name, info in config["files"].items():
        _need(isinstance(info, dict), where, "files must map names to objects")
        check_member_name(name, str(where))
        _need(isinstance(info.get("sha256"), str) and SHA256_HEX.fullmatch(info["sha256"]) is not None, where,
              f"files[{name!r}].sha256 must be 64 hex digits")
        _need(_int(info.get("bytes", 0), 0, 1 << 40), where, f"files[{name!r}].bytes must be a size in bytes")
