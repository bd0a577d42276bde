"""`zoo info`: what a scene is, from its entry (or, for an index scene not pulled yet, from the index)."""

from __future__ import annotations

import re

from .errors import UserError
from .hub import Hub
from .index import IndexEntry
from .scenes import parse_scene, resolve

CARD_LINE = re.compile(r"^- (training image|training image licence): (.+)$", re.M)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(value) -> str:
    """Text from an entry, an index or a server, safe to print on a terminal: control characters (escape
    sequences that could move the cursor, rewrite earlier lines or set the window title) become '?'."""
    return CONTROL.sub("?", str(value))


def _card(text: str) -> dict:
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    licence = re.search(r"^license:\s*(\S+)", text, re.M)
    found = {k: v.strip() for k, v in CARD_LINE.findall(text)}
    return {"title": title, "license": licence[1] if licence else None,
            "image_source": found.get("training image"), "image_license": found.get("training image licence")}


def scene_info(text: str, hub: Hub, index: dict[str, IndexEntry]) -> dict:
    ref = parse_scene(text, index)
    try:
        scene = resolve(text, hub, index, download=False)
    except UserError:
        if ref.kind != "hub" or not ref.name:
            raise
        item = index[ref.name]   # an index scene that is not pulled yet: what the index knows
        return {"scene": ref.label, "pulled": False,
                "summary": {"scene": ref.label, "repo": f"{item.repo}@{item.revision}", "pulled": "no (zoo pull "
                            f"{ref.label})", "description": item.description},
                "files": item.files}
    entry = scene.entry
    card = entry.root / "README.md"
    meta = _card(card.read_text(errors="replace")) if card.is_file() else {}
    (lo, hi), ppc = entry.grid_bounds, entry.pixels_per_cell
    h, w = entry.config.training_size
    summary = {
        "scene": ref.label,
        "title": meta.get("title") or "-",
        "source": f"{ref.repo}@{scene.commit}" if scene.commit else f"{ref.kind} ({entry.root})",
        "classes": ", ".join(entry.class_names) or "none (images only)",
        "training size": f"{h}x{w} (grid {entry.trained_grid[0]}x{entry.trained_grid[1]}, "
                         f"{entry.config.iterations or '?'} iterations)",
        "sizes": f"{lo[0] * ppc}x{lo[1] * ppc} .. {hi[0] * ppc}x{hi[1] * ppc} in steps of {ppc}",
        "artifacts": ", ".join(entry.precisions()) + (" + weights" if "model.safetensors" in entry.config.files
                                                      else ""),
        "licence": meta.get("license") or "-",
        "image": f"{meta.get('image_source') or '?'} ({meta.get('image_license') or '?'})",
    }
    files = {name: {k: v for k, v in record.details.items() if k in ("sha256", "bytes", "precision")}
             for name, record in entry.config.files.items()}
    return {"scene": ref.label, "pulled": True, "path": str(entry.root), "revision": scene.commit,
            "summary": summary, "files": files, "classes": {"names": entry.class_names, "palette": entry.palette},
            "card": meta}
