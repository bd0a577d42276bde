"""A trainer run folder, read in one place (the zoo's Entry is its counterpart for exported scenes):

    config.json          format CONFIG_FORMAT: model and training configuration, data description, versions
    data.safetensors     the training frames (uint8) and masks, as trained on
    checkpoints/         complete training states (trainer/checkpoint.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from zoo.errors import UserError

from .checkpoint import LOAD_ERRORS, _strip, guard_state, list_checkpoints, load_ema_generator, newest_loadable
from .config import ModelConfig, TrainConfig
from .generator import Generator, refresh_spectral_norms

__all__ = ["CONFIG_FORMAT", "Run"]

CONFIG_FORMAT = "oneshot-gan-run/1"


def model_config(d: dict):
    """The run's model: ModelConfig (the one-shot GAN) or, with "arch": "singan", SinGANConfig."""
    if d.get("arch", "oneshot") == "singan":
        from .singan import SinGANConfig

        return SinGANConfig.from_dict(d)
    return ModelConfig.from_dict(d)


@dataclass(frozen=True)
class Run:
    root: Path
    config: dict
    model_config: ModelConfig   # or trainer.singan.SinGANConfig (model_config); .arch tells which
    train_config: TrainConfig

    @classmethod
    def open(cls, root: Path) -> "Run":
        """The run in `root`, its config.json checked; a one-line UserError for anything else."""
        root = Path(root)
        path = root / "config.json"
        if not path.is_file():
            raise UserError(f"{root}: not a run folder of `trainer fit` (no config.json)")
        try:
            config = json.loads(path.read_text())
            if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
                raise UserError(f"{path}: unknown format {config.get('format') if isinstance(config, dict) else None!r}")
            return cls(root, config, model_config(config["model"]), TrainConfig.from_dict(config["train"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"{path}: unreadable run config ({e.__class__.__name__}: {e})") from None

    @staticmethod
    def is_run(path: Path) -> bool:
        try:
            return json.loads((Path(path) / "config.json").read_text()).get("format") == CONFIG_FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    def frames(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The training frames (N, H, W, 3) uint8 and masks (N, H, W) class ids, or None."""
        path = self.root / "data.safetensors"
        try:
            data = load_file(str(path))
            images = data["images"].numpy()
        except LOAD_ERRORS as e:
            raise UserError(f"{path}: unreadable ({(str(e).strip().splitlines() or [type(e).__name__])[0][:160]}); "
                            "the run's training data is lost, train it again") from None
        return images, (data["masks"].numpy() if "masks" in data else None)

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.root / "checkpoints")

    def singan(self):
        """A SinGAN run's pyramid (trainer.singan.SinGAN) from the newest checkpoint that loads, in eval mode, and
        that checkpoint's path. Scales the run has not reached yet keep their initial weights: sample a finished
        run (or one scale's preview) only."""
        from .singan import SinGAN

        ckpts = self.checkpoints()
        if not ckpts:
            raise UserError(f"{self.root}: no checkpoint yet (checkpoints/ckpt-*.safetensors)")

        def load(path: Path) -> SinGAN:
            model = SinGAN(self.model_config)
            model.load_state_dict(_strip("G", load_file(str(path))), strict=True)
            return model.eval()

        return newest_loadable(ckpts, load)

    def ema_generator(self) -> tuple[Generator, Path]:
        """The EMA generator of the newest checkpoint that loads, in eval mode, and that checkpoint's path."""
        if self.model_config.arch == "singan":   # callers branch to singan() first; this names the mistake
            raise UserError(f"{self.root}: a SinGAN run has no EMA generator (Run.singan() loads its pyramid)")
        ckpts = self.checkpoints()
        if not ckpts:
            raise UserError(f"{self.root}: no checkpoint yet (checkpoints/ckpt-*.safetensors)")

        def load(path: Path) -> Generator:
            G = load_ema_generator(path, Generator(self.model_config))
            guard_state(path)   # `zoo export` reads it next: an unreadable header falls back here too
            return G

        G, path = newest_loadable(ckpts, load)
        refresh_spectral_norms(G)  # runs saved before the EMA kept exact vectors
        return G.eval(), path
