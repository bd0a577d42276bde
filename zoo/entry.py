"""Reading a scene entry folder (no torch): its config.json (zoo.entry_config) validated on load, artifact paths
kept inside the folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .entry_config import ONNX_FILES, EntryConfig
from .errors import UserError
from .index import check_member_name

__all__ = ["Entry", "safe_member"]


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
    """An entry folder and its config; the properties are the config's, for brevity at the call sites."""
    root: Path
    config: EntryConfig
    within: Path | None = None   # where the entry's symlinks may lead (None: inside root)

    @classmethod
    def load(cls, root: Path, within: Path | None = None) -> "Entry":
        root = Path(root)
        path = root / "config.json"
        if not root.is_dir():
            raise UserError(f"{root}: not a scene folder")
        if not path.is_file():
            raise UserError(f"{root}: no config.json (not a scene entry)")
        config = EntryConfig.read(path)
        for name in config.files:
            safe_member(root, name, within)
        return cls(root, config, within)

    @property
    def noise_dim(self) -> int:
        return self.config.noise_dim

    @property
    def trained_grid(self) -> tuple[int, int]:
        return self.config.trained_grid

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def map_sizes(self) -> list[tuple[int, int]]:
        """SinGAN: the noise maps' sizes at the trained size, coarsest first ([] for one-shot entries)."""
        return list(self.config.map_sizes)

    @property
    def pixels_per_cell(self) -> int:
        return self.config.pixels_per_cell

    @property
    def grid_bounds(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return self.config.grid_min, self.config.grid_max

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.config.palette]

    @property
    def has_masks(self) -> bool:
        return self.config.has_masks

    def precisions(self) -> list[str]:
        return self.config.precisions()

    def onnx_path(self, precision: str) -> Path:
        name = ONNX_FILES.get(precision)
        if name is None or name not in self.config.files:
            have = ", ".join(self.precisions()) or "none"
            raise UserError(f"{self.root}: no {precision} model in this entry (has: {have})")
        path = safe_member(self.root, name, self.within)
        if not path.is_file():
            raise UserError(f"{path}: missing (the entry is incomplete)")
        return path
