import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from trainer.cli import main as trainer_cli
from zoo.cli import main as zoo_cli

PALETTE = [0, 0, 0, 230, 30, 30, 30, 30, 230]
COLOURS = np.array([[60, 130, 60], [200, 40, 40], [40, 40, 200]], np.uint8)


def scene_arrays(h=48, w=80, seed=0):
    """A textured background with two coloured objects; returns (image, class-id mask)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 5: h // 2, w // 8: w // 3] = 1
    mask[h // 2 + 4: h - 4, w // 2: w - 10] = 2
    img = COLOURS[mask] + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    return img, mask


def save_palette_mask(path, mask):
    m = Image.fromarray(mask, "P")
    m.putpalette(PALETTE)
    m.save(path)


@pytest.fixture
def scene(tmp_path):
    img, mask = scene_arrays()
    Image.fromarray(img).save(tmp_path / "scene.png")
    save_palette_mask(tmp_path / "mask.png", mask)
    return tmp_path / "scene.png", tmp_path / "mask.png"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    img, mask = scene_arrays()
    Image.fromarray(img).save(tmp / "scene.png")
    save_palette_mask(tmp / "mask.png", mask)
    out = tmp / "run"
    res = CliRunner().invoke(trainer_cli, ["fit", str(tmp / "scene.png"), "--mask", str(tmp / "mask.png"),
                                            "--out", str(out), "--iters", "3", "--max-size", "40", "--width",
                                            "0.125", "--batch-size", "2", "-q"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="session")
def entry(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("entries") / "scene"
    res = CliRunner().invoke(zoo_cli, ["export", str(run_dir), "--out", str(out), "--precision", "fp16", "-q"])
    assert res.exit_code == 0, res.output
    return out
