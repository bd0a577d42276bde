"""Complete, resumable checkpoints in safetensors (no pickle), written atomically.

One file per checkpoint, `checkpoints/ckpt-<iteration>.safetensors`, holds tensors under prefixes
`G.`, `D.`, `G_ema.`, `opt_G.`, `opt_D.` (optimizer state tensors) and `rng.` (RNG states). The iteration and
the optimizers' non-tensor state (param groups, step counts) live in the file's string metadata as JSON.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Callable, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zoo.errors import UserError
from zoo.files import atomic_path

from .generator import Generator

CKPT_RE = re.compile(r"ckpt-(\d{9})\.safetensors$")
# what reading a truncated, empty or foreign safetensors file raises
LOAD_ERRORS = (SafetensorError, OSError, RuntimeError, KeyError, ValueError, TypeError)
T = TypeVar("T")


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{prefix}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"], "state_keys": {str(i): list(s) for i, s in sd["state"].items()}}


def _optimizer_state(tensors: dict[str, torch.Tensor], prefix: str, meta: dict) -> dict:
    state = {int(i): {k: tensors[f"{prefix}.{i}.{k}"] for k in keys} for i, keys in meta["state_keys"].items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def _prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def rng_states() -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda{i}"] = s
    return states


def set_rng_states(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(ckpt_dir: Path, iteration: int, G, D, G_ema, opt_G, opt_D, keep: int,
                    guard: dict | None = None) -> Path:
    """guard: the collapse guard's state (trainer.health.GuardState), kept in the metadata as JSON."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors = {**_prefixed("G", G.state_dict()), **_prefixed("D", D.state_dict()),
               **_prefixed("G_ema", G_ema.state_dict()), **rng_states()}
    t_g, meta_g = _optimizer_tensors(opt_G, "opt_G")
    t_d, meta_d = _optimizer_tensors(opt_D, "opt_D")
    tensors.update(t_g)
    tensors.update(t_d)
    meta = {"iteration": str(iteration), "opt_G": json.dumps(meta_g), "opt_D": json.dumps(meta_d),
            "format": "oneshot-gan-checkpoint/1"}
    if guard is not None:
        meta["guard"] = json.dumps(guard)
    path = ckpt_dir / f"ckpt-{iteration:09d}.safetensors"
    atomic_save_tensors(path, tensors, meta)
    _rotate(ckpt_dir, keep)
    return path


def _rotate(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints, and the newest healthy one (the guard's rollback target) too."""
    ckpts = list_checkpoints(ckpt_dir)
    if keep <= 0 or len(ckpts) <= keep:
        return
    spare = next((p for p in reversed(ckpts) if is_healthy(p)), None)
    for old in ckpts[:-keep]:
        if old != spare:
            old.unlink(missing_ok=True)


def guard_state(path: Path) -> dict | None:
    """The collapse guard's state stored with a checkpoint (None for checkpoints written before the guard)."""
    raw = read_metadata(path).get("guard")
    return json.loads(raw) if raw else None


def is_healthy(path: Path) -> bool:
    """Whether the guard's latest check before this checkpoint found no problem."""
    state = guard_state(path)
    last = (state or {}).get("last")
    return not (last and last.get("problems"))


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_RE.search(p.name))


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_checkpoint(path: Path, G, D, G_ema, opt_G, opt_D) -> int:
    """Restore everything (strictly) and return the iteration the checkpoint was taken after."""
    tensors = load_file(str(path))
    meta = read_metadata(path)
    G.load_state_dict(_strip("G", tensors), strict=True)
    D.load_state_dict(_strip("D", tensors), strict=True)
    G_ema.load_state_dict(_strip("G_ema", tensors), strict=True)
    opt_G.load_state_dict(_optimizer_state(tensors, "opt_G", json.loads(meta["opt_G"])))
    opt_D.load_state_dict(_optimizer_state(tensors, "opt_D", json.loads(meta["opt_D"])))
    set_rng_states(tensors)
    return int(meta["iteration"])


def newest_loadable(ckpts: list[Path], load: Callable[[Path], T]) -> tuple[T, Path]:
    """load() of the newest checkpoint that loads. One left truncated or empty (a crash, a full disk) is
    skipped with a warning and kept as it is; none loading is a one-line error."""
    for path in reversed(ckpts):
        try:
            return load(path), path
        except LOAD_ERRORS as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            warnings.warn(f"{path}: unreadable ({first}); falling back to the checkpoint before it")
    raise UserError(f"{ckpts[-1].parent}: none of the {len(ckpts)} checkpoints can be loaded")


def load_ema_generator(path: Path, G: Generator) -> Generator:
    """Load only the EMA generator weights from a checkpoint (for sampling and export)."""
    G.load_state_dict(_strip("G_ema", load_file(str(path))), strict=True)
    return G
