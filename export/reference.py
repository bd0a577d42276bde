"""Import checkpoints of the authors' implementation (`docs/reference-checkpoint.md`).

`models/<iter>_G_EMA.pth` is loaded with `torch.load(weights_only=True)`; `opt.pkl` is read with an unpickler
that accepts only an argparse namespace of plain values. The architecture is derived from the tensor shapes
(latent grid and C0 from `first_linear.weight`, depth from the `body.N` blocks, classes from
`mask_converter.weight`), and the weights load strictly into our generator, whose state-dict layout is the
reference's. The entry reproduces the reference's eval-mode output (sigma from the stored u and v).
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path

import torch

from trainer.config import D_BLOCKS, G_CHANNEL_MULT, BASE_CHANNELS, ModelConfig
from trainer.data import default_class_names, default_palette
from trainer.generator import Generator

from .graph import ExportError
from .writer import check_destination, write_entry

logger = logging.getLogger(__name__)

EMA_RE = re.compile(r"^(\d+)_G_EMA\.pth$")
PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


class _NamespaceUnpickler(pickle.Unpickler):
    """Only argparse.Namespace (and what pickle needs to rebuild a plain object) may be loaded."""

    ALLOWED = {("argparse", "Namespace"), ("copyreg", "_reconstructor"), ("builtins", "object")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_options(path: Path) -> dict:
    """The reference's opt.pkl as a dict of plain values."""
    try:
        obj = _NamespaceUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
        raise ExportError(f"{path}: not a plain options file ({e})") from None
    opts = vars(obj) if hasattr(obj, "__dict__") else None
    if not isinstance(opts, dict) or not all(isinstance(v, PLAIN) for v in opts.values()):
        raise ExportError(f"{path}: expected an argparse namespace of plain values")
    return opts


def find_ema(ckpt_dir: Path, iteration: int | None) -> Path:
    models = ckpt_dir / "models"
    if not models.is_dir():
        raise ExportError(f"{ckpt_dir}: no models/ folder (expected a reference checkpoint folder)")
    found = {int(m.group(1)): p for p in models.iterdir() if (m := EMA_RE.match(p.name))}
    if iteration is None and (models / "latest_epoch.txt").is_file():
        text = (models / "latest_epoch.txt").read_text().strip()
        iteration = int(text) if text.isdigit() and int(text) in found else None
    if iteration is None:
        if not found:
            raise ExportError(f"{models}: no <iter>_G_EMA.pth file")
        iteration = max(found)
    if iteration not in found:
        raise ExportError(f"{models}: no {iteration}_G_EMA.pth")
    return found[iteration]


def config_from_state_dict(sd: dict[str, torch.Tensor], where: str) -> ModelConfig:
    try:
        k, c0, h0, w0 = sd["first_linear.weight"].shape
    except (KeyError, ValueError):
        raise ExportError(f"{where}: no first_linear.weight of shape [noise_dim, C0, h0, w0]") from None
    blocks = {int(m.group(1)) for key in sd if (m := re.match(r"body\.(\d+)\.", key))}
    g = len(blocks)
    if g not in D_BLOCKS or blocks != set(range(g)):
        raise ExportError(f"{where}: unsupported number of generator blocks ({g})")
    last = sd[f"body.{g - 1}.conv2.weight_orig"].shape[0]
    width = last / (G_CHANNEL_MULT[-1] * BASE_CHANNELS)
    classes = sd["mask_converter.weight"].shape[0] if "mask_converter.weight" in sd else 0
    d_blocks, d_ll = D_BLOCKS[g]
    f = 2 ** (g - 1)
    return ModelConfig(height=h0 * f, width=w0 * f, grid_h=h0, grid_w=w0, g_blocks=g, d_blocks=d_blocks,
                       d_lowlevel=d_ll, num_classes=classes, width_mult=width, noise_dim=k)


def load_reference_generator(path: Path) -> Generator:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ExportError(f"{path}: cannot load the state dict ({str(e).splitlines()[0]})") from None
    if not isinstance(sd, dict):
        raise ExportError(f"{path}: expected a state dict")
    cfg = config_from_state_dict(sd, str(path))
    G = Generator(cfg)
    try:
        G.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{path}: does not match the reference generator layout "
                          f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e})") from None
    return G.eval()


def import_reference(ckpt_dir: Path, out: Path, *, iteration: int | None = None, overwrite: bool = False,
                     precisions: tuple[str, ...] = ("fp32",)) -> dict:
    ckpt_dir, out = Path(ckpt_dir), Path(out)
    check_destination(out, overwrite)
    ema = find_ema(ckpt_dir, iteration)
    opts = read_options(ckpt_dir / "opt.pkl") if (ckpt_dir / "opt.pkl").is_file() else {}
    G = load_reference_generator(ema)
    m = G.cfg.num_classes
    classes = {"names": default_class_names(m) if m else [],
               "palette": [list(map(int, c)) for c in default_palette(m)] if m else []}
    training = {"iterations": int(EMA_RE.match(ema.name).group(1)), "source": "reference implementation",
                "hyperparameters": {k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool))}}
    logger.info(f"{ema}: {G.cfg.height}x{G.cfg.width}, grid {G.cfg.grid_h}x{G.cfg.grid_w}, {G.cfg.g_blocks} blocks, "
        f"{m or 'no'} mask classes")
    return write_entry(G, out, classes, training, precisions=precisions)
