"""The one owner of a scene entry's config.json: a typed, validated, frozen view of the document.

Every reader goes through `EntryConfig.from_dict` (or `read`), which checks types, ranges and sizes and raises one-line
errors for a config the runtime cannot use, whether damaged or made up by a hostile server. What the code does not
interpret (the latent's description, output layouts, the training record, versions) is kept as read, so `to_dict`
gives back the document it was made from, key for key: an entry written before this class existed reads and
re-serialises to the same bytes.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import UserError
from .index import check_member_name

__all__ = ["ENTRY_FORMAT", "MAX_GRID", "ONNX_FILES", "EntryConfig", "FileRecord", "is_entry_config"]

ENTRY_FORMAT = "oneshot-gan-entry/1"   # the schema version; readers refuse any other
MAX_GRID = 64   # latent cells per side; the runtime allocates grid x pixels_per_cell pixels per sample
# SinGAN entries ("model": {"arch": "singan"}): one noise map per scale, the "grid" is the output size itself
# (pixels_per_cell 1), latent.map_sizes the maps' sizes at the trained size, coarsest first
MAX_SIDE = 4096
MAX_SCALES = 32
MAPS_SCHEME = "per-sample-maps-v1"   # runtime.latents.latent_maps
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ONNX_FILES = {"fp32": "onnx/generator.onnx", "fp16": "onnx/generator.fp16.onnx", "int8": "onnx/generator.int8.onnx"}
SECTIONS = ("model", "latent", "outputs", "classes", "files", "training")


@dataclass(frozen=True)
class FileRecord:
    """One file of the entry: its sha256, size, and what the exporter measured (precision, parity, quality)."""
    sha256: str
    bytes: int | None
    details: Mapping[str, Any]   # the record as read, sha256 and bytes included


@dataclass(frozen=True)
class EntryConfig:
    noise_dim: int
    trained_grid: tuple[int, int]
    pixels_per_cell: int
    grid_min: tuple[int, int]
    grid_max: tuple[int, int]
    training_size: tuple[int, int]
    iterations: int | None
    macs_per_sample: int | None   # at the trained grid, as the exporter counted them
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    has_masks: bool
    files: Mapping[str, FileRecord]
    model: Mapping[str, Any]   # the generator's settings, for the torch side (trainer.config.ModelConfig)
    document: Mapping[str, Any]   # everything as read, for to_dict
    arch: str = "oneshot"   # or "singan"
    map_sizes: tuple[tuple[int, int], ...] = ()   # singan: the noise maps' sizes at the trained size

    @classmethod
    def read(cls, path: Path) -> "EntryConfig":
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        except RecursionError:
            raise UserError(f"{path}: nested too deeply to be a scene entry") from None
        return cls.from_dict(config, where=path)

    @classmethod
    def from_dict(cls, config: Any, *, where: Path | str) -> "EntryConfig":
        _validate(config, where)
        latent, bounds = config["latent"], config["latent"]["grid_bounds"]
        files = {name: FileRecord(info["sha256"], info.get("bytes"), MappingProxyType(copy.deepcopy(info)))
                 for name, info in config["files"].items()}
        return cls(noise_dim=config["model"]["noise_dim"], trained_grid=tuple(latent["trained_grid"]),
                   pixels_per_cell=latent["pixels_per_cell"], grid_min=tuple(bounds["min"]),
                   grid_max=tuple(bounds["max"]), training_size=tuple(config["training"]["size"]),
                   iterations=config["training"].get("iterations"),
                   macs_per_sample=(config.get("cost") or {}).get("macs_per_sample_at_trained_grid"),
                   class_names=tuple(config["classes"]["names"]),
                   palette=tuple(tuple(c) for c in config["classes"]["palette"]),
                   has_masks="mask" in config["outputs"], files=MappingProxyType(files),
                   model=MappingProxyType(copy.deepcopy(config["model"])),
                   document=MappingProxyType(copy.deepcopy(config)), arch=config["model"].get("arch", "oneshot"),
                   map_sizes=tuple(tuple(s) for s in latent.get("map_sizes", ())))

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self.document))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def precisions(self) -> list[str]:
        """The ONNX precisions this entry ships, in the order fp32, fp16, int8."""
        return [p for p, name in ONNX_FILES.items() if name in self.files]


def is_entry_config(path: Path) -> bool:
    """Whether `path` is a JSON file that claims to be an entry's config (its format), valid or not."""
    try:
        return json.loads(Path(path).read_text()).get("format") == ENTRY_FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _need(cond: bool, where, what: str) -> None:
    if not cond:
        raise UserError(f"{where}: {what}")


def _int(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _int_pair(value, lo: int = 1, hi: int = MAX_GRID) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_int(v, lo, hi) for v in value)


def _validate(config, where) -> None:
    _need(isinstance(config, dict), where, "expected a JSON object")
    _need(config.get("format") == ENTRY_FORMAT, where, f"unknown format {config.get('format')!r} (expected {ENTRY_FORMAT})")
    for key in SECTIONS:
        _need(isinstance(config.get(key), dict), where, f"missing or invalid '{key}'")
    model, latent, training = config["model"], config["latent"], config["training"]
    arch = model.get("arch", "oneshot")
    _need(arch in ("oneshot", "singan"), where, f"unknown model.arch {arch!r}")
    top = MAX_GRID if arch == "oneshot" else MAX_SIDE
    _need(_int(model.get("noise_dim"), 1, 4096), where, "model.noise_dim must be an int in 1..4096")
    _need(_int_pair(latent.get("trained_grid"), 1, top), where, f"latent.trained_grid must be [h, w] within 1..{top}")
    ppc = latent.get("pixels_per_cell")
    _need(_int(ppc, 1, 1024) and ppc & (ppc - 1) == 0, where, "latent.pixels_per_cell must be a power of 2 up to 1024")
    bounds = latent.get("grid_bounds")
    _need(isinstance(bounds, dict) and _int_pair(bounds.get("min"), 1, top) and _int_pair(bounds.get("max"), 1, top)
          and all(bounds["min"][k] <= latent["trained_grid"][k] <= bounds["max"][k] for k in (0, 1)), where,
          f"latent.grid_bounds must hold min <= trained_grid <= max, each [h, w] within 1..{top}")
    if arch == "singan":
        sizes = latent.get("map_sizes")
        _need(ppc == 1 and latent.get("scheme") == MAPS_SCHEME, where,
              f"a SinGAN entry's latent is scheme {MAPS_SCHEME} with pixels_per_cell 1")
        _need(isinstance(sizes, list) and 1 <= len(sizes) <= MAX_SCALES and all(_int_pair(v, 1, top) for v in sizes)
              and sizes[-1] == latent["trained_grid"], where,
              f"latent.map_sizes must list 1..{MAX_SCALES} sizes [h, w], the last the trained size")
    _need(_int_pair(training.get("size"), 1, MAX_GRID * 1024), where, "training.size must be [h, w]")
    _need(training["size"] == [v * ppc for v in latent["trained_grid"]], where,
          "training.size must be trained_grid x pixels_per_cell")
    _need(training.get("iterations") is None or _int(training["iterations"], 0, 1 << 40), where,
          "training.iterations must be a count")
    cost = config.get("cost")
    _need(cost is None or (isinstance(cost, dict) and (cost.get("macs_per_sample_at_trained_grid") is None
                                                       or _int(cost["macs_per_sample_at_trained_grid"], 1, 1 << 60))),
          where, "cost.macs_per_sample_at_trained_grid must be a count")
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
        _need("bytes" not in info or _int(info["bytes"], 0, 1 << 40), where,
              f"files[{name!r}].bytes must be a size in bytes")
