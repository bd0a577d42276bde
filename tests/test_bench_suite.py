"""The robustness suite's scenes load as the trainer reads them, and its pass rules are the issue's."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytest.importorskip("skimage")

from bench.robustness import verdict  # noqa: E402
from bench.scenes import SCENES, write_scene  # noqa: E402
from trainer.data import load_scene  # noqa: E402


@pytest.mark.parametrize("name", list(SCENES))
def test_scene_loads_with_its_classes(tmp_path, name):
    spec = SCENES[name]()
    args = write_scene(spec, tmp_path / name)
    scene = load_scene(Path(args["source"]), Path(args["mask"]) if "mask" in args else None)
    assert len(scene.frames) == len(spec.frames)
    if spec.masks is None:
        assert "mask" not in args
        return
    assert scene.num_classes == len(spec.classes)
    for got, want in zip(scene.masks, spec.masks):
        np.testing.assert_array_equal(np.asarray(got), want)  # exact masks survive the file format


def test_suite_covers_what_the_issue_asks():
    specs = [f() for f in SCENES.values()]
    assert len(specs) >= 6
    assert any(s.masks is None for s in specs)
    assert any(s.binary for s in specs)
    assert any(len(s.classes) >= 5 for s in specs)
    assert any(len(s.frames) >= 5 for s in specs)


def passing_run(**over):
    r = {"events": [], "health_problems": [], "diversity": 0.5, "near_copies": 0.0, "classes": ["a", "b", "c"],
         "train_share": [0.6, 0.395, 0.005], "presence": [1.0, 0.9, 0.0], "tv": 0.05, "miou": 80.0}
    return {**r, **over}


def test_verdict_applies_every_threshold():
    assert verdict(passing_run()) == []  # class c covers < 1 % of the training masks: not required
    assert verdict(passing_run(presence=[1.0, 0.79, 0.0])) == ["class presence b 79 %"]
    assert verdict(passing_run(tv=0.11)) == ["TV 0.110"]
    assert verdict(passing_run(diversity=0.29)) == ["diversity 0.29"]
    assert verdict(passing_run(near_copies=0.06)) == ["near-copies 6 %"]
    assert verdict(passing_run(miou=69.9)) == ["mIoU 69.9"]
    assert verdict(passing_run(events=["rollback at 700 (identical samples)"]))[0].startswith("guard: rollback")
    assert verdict(passing_run(health_problems=["saturated colours"])) == ["guard: saturated colours"]
    maskless = {"events": [], "health_problems": [], "diversity": 0.5, "near_copies": 0.0, "presence": None}
    assert verdict(maskless) == []
