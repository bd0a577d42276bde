"""`zoo verify`: an entry is complete, unchanged and runs: schema, hashes, model card, weights header, every
ONNX variant loads in onnxruntime (built-in operators only: no custom-op library is ever registered) and
samples a batch with the right shapes, types and class ids."""

from __future__ import annotations

import os
from fnmatch import fnmatch

import numpy as np

from .entry import Entry, safe_member
from .entry_config import ONNX_FILES
from .errors import UserError
from .quality import Scorer
from .scenes import ResolvedScene, check_files, patterns
from .sessions import open_session

CARD_KEYS = ("library_name:", "pipeline_tag:", "license:")


def verify(scene: ResolvedScene) -> dict:
    """Raise UserError at the first problem; return what was checked."""
    root = scene.path
    wanted = ["*"]   # an entry folder: every listed file; a pulled scene: what was pulled
    if scene.ref.kind == "hub":
        wanted = patterns(os.path.lexists(root / "model.safetensors"), os.path.lexists(root / "checkpoint"))
    entry = check_files(root, scene.ref, wanted, within=scene.entry.within)
    checks = {"files": sorted(f for f in entry.config.files if any(fnmatch(f, p) for p in wanted)), "hashes": "ok"}
    _check_card(entry)
    checks["model_card"] = "ok"
    if "model.safetensors" in checks["files"]:
        checks["weights"] = _check_weights(entry)
    if "quality.json" in checks["files"]:
        Scorer.load(safe_member(entry.root, "quality.json", entry.within))
        checks["quality_reference"] = "ok"
    checks["onnx"] = {p: _check_onnx(entry, p) for p in entry.precisions()}
    if not checks["onnx"]:
        raise UserError(f"{entry.root}: no ONNX model in the entry")
    return checks


def _check_card(entry: Entry) -> None:
    path = entry.root / "README.md"
    if not path.is_file():
        raise UserError(f"{path}: missing (every entry has a model card)")
    text = path.read_text(errors="replace")
    head = text.split("---")[1] if text.startswith("---") and text.count("---") >= 2 else ""
    missing = [k.rstrip(":") for k in CARD_KEYS if k not in head]
    if missing:
        raise UserError(f"{path}: model card metadata lacks {', '.join(missing)}")


def _check_weights(entry: Entry) -> int:
    from safetensors import SafetensorError, safe_open

    path = entry.root / "model.safetensors"
    try:
        with safe_open(str(path), framework="numpy") as f:
            return len(list(f.keys()))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None


STANDARD_DOMAINS = {"", "ai.onnx"}


def _op_domains(path) -> str:
    """Only standard ONNX operators (checked with the onnx package when it is installed: the exporter's extra)."""
    try:
        import onnx
    except ImportError:
        return "not checked (pip install onnx to check operator domains)"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a valid ONNX file ({str(e).splitlines()[0][:160]})") from None
    domains = {n.domain for n in model.graph.node}   # opset_import may list unused domains (the quantizer does)
    if not domains <= STANDARD_DOMAINS:
        raise UserError(f"{path}: uses non-standard operator domains {sorted(domains - STANDARD_DOMAINS)}")
    return "standard only"


def _check_onnx(entry: Entry, precision: str) -> dict:
    path = entry.onnx_path(precision)
    domains = _op_domains(path)
    try:
        sess = open_session(path)
    except Exception as e:  # onnxruntime's own exception types
        raise UserError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    rng = np.random.default_rng(0)
    # one-shot entries take z over the trained grid; SinGAN entries one noise map per scale, z0 .. zK
    shapes = ({f"z{n}": s for n, s in enumerate(entry.map_sizes)} if entry.arch == "singan" else
              {"z": entry.trained_grid})
    feed = {k: rng.standard_normal((2, entry.noise_dim, *hw), dtype=np.float32) for k, hw in shapes.items()}
    try:
        outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    except Exception as e:
        raise UserError(f"{path}: a test sample failed ({str(e).splitlines()[0][:200]})") from None
    h, w = entry.config.training_size
    image = outputs.get("image")
    if image is None or image.dtype != np.uint8 or image.shape != (2, h, w, 3):
        raise UserError(f"{path}: expected image uint8 (2, {h}, {w}, 3), got "
                        f"{None if image is None else (image.dtype, image.shape)}")
    if entry.has_masks:
        mask = outputs.get("mask")
        if mask is None or mask.shape != (2, h, w) or int(mask.max()) >= len(entry.class_names):
            raise UserError(f"{path}: the mask output is missing, misshapen or has unknown class ids")
    return {"file": ONNX_FILES[precision], "sample": "ok", "operators": domains}
