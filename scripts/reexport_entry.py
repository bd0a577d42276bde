"""Export a one-shot entry again from the weights inside its own fp32 ONNX, so that an entry shipped without
model.safetensors or its run (the bundled coins scene) gets the exporter's current graphs.

    .venv/bin/python scripts/reexport_entry.py zoo/scenes/coins OUT --title "coins (bundled demo scene)" \
        --source "scikit-image data.coins(): ..." --image-license "public domain" --license cc0-1.0

Spectral norm is folded in an exported graph, so its initializers are the plain weights the sampler runs; they
load into a generator without spectral norm (the RGB heads of the inner blocks are not in the graph and play no
part in sampling). Training facts, quality reference and training frames are carried over as they are. Before
anything is written, the recovered generator must give the old graph's outputs over the export's grids and batch
sizes (onnx_export.parity: uint8 |delta| <= 1, masks >= 99.9 %); the export then checks the new graphs against it.
OUT must not exist yet.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from export.onnx_export import parity  # noqa: E402
from export.graph import remove_spectral_norms  # noqa: E402
from export.writer import check_destination, write_entry  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.generator import Generator  # noqa: E402
from zoo.errors import UserError, log_to_stderr  # noqa: E402


def generator_from_onnx(config: dict, path: Path) -> Generator:
    G = remove_spectral_norms(Generator(ModelConfig.from_dict(config["model"])).eval())
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    sd = {k[2:]: torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith("G.")}
    c0 = G.first_linear.bias.numel()
    biases = [k for k, v in inits.items() if not k.startswith("G.") and v.shape == (1, c0, 1, 1)]
    if len(biases) != 1:
        raise SystemExit(f"{path}: cannot tell the first layer's bias among {biases}")
    sd["first_linear.bias"] = torch.from_numpy(inits[biases[0]].reshape(c0).copy())
    # copied in place: load_state_dict would go through spectral norm's load hook, which outlives its removal
    params = dict(G.named_parameters())
    inner_heads = {f"rgb_converters.{i}.{p}" for i in range(len(G.body) - 1) for p in ("weight", "bias")}
    if set(params) - set(sd) != inner_heads or set(sd) - set(params):
        raise SystemExit(f"{path}: weights do not match the config's generator (missing "
                         f"{sorted(set(params) - set(sd) - inner_heads)}, unexpected {sorted(set(sd) - set(params))}); this script "
                         "reads graphs in the resize form with two heads, as exported before issue 14")
    with torch.no_grad():
        for name, value in sd.items():
            if params[name].shape != value.shape:
                raise SystemExit(f"{path}: {name} has shape {tuple(value.shape)}, the config's generator "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(value)
    return G.requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("entry", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--title", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--image-license", required=True)
    ap.add_argument("--license", required=True)
    a = ap.parse_args()
    check_destination(a.out, overwrite=False)
    config = json.loads((a.entry / "config.json").read_text())
    old = a.entry / "onnx/generator.onnx"
    G = generator_from_onnx(config, old)
    report = parity(G, old.read_bytes(), str(old))
    print(f"{old}: the recovered weights give its outputs, worst {report['worst']}")
    precisions = tuple(f["precision"] for f in config["files"].values() if "precision" in f)
    extra = {name: a.entry / name for name in config["files"] if name.startswith("training/")}
    stats = json.loads((a.entry / "quality.json").read_text()) if "quality.json" in config["files"] else None
    card = {"title": a.title, "source": a.source, "image_license": a.image_license, "license": a.license}
    log_to_stderr(quiet=False)
    write_entry(G, a.out, config["classes"], config["training"], precisions=precisions, weights=False, card=card,
                extra=extra, reference_stats=stats)
    print(f"{a.out}: exported again")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
