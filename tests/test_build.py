"""`zoo build MANIFEST`: many scenes trained, evaluated, exported and pushed in one job, run locally (the Ray
path is in test_ray.py)."""

import json
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import save_palette_mask, scene_arrays
from test_zoo import FakeApi, fake_hub, hub  # noqa: F401  (fixtures)
from trainer.cli import main as trainer_cli
from zoo.cli import main as zoo_cli
from zoo.errors import UserError
from zoo.manifest import read_manifest

TINY = {"iters": 3, "max-size": 40, "width": 0.125, "batch-size": 2}


def write_scene(folder):
    img, mask = scene_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / "scene.png")
    save_palette_mask(folder / "mask.png", mask)
    (folder / "classes.txt").write_text("sky\nground\nball\n")


def manifest(tmp_path, scenes, **top):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"defaults": TINY, "eval": {"samples": 4, "unet-steps": 2}, "precisions": ["fp32"],
                                **top, "scenes": scenes}))
    return path


@pytest.mark.parametrize("text, message", [
    ("scenes: []", "'scenes' must be a non-empty list"),
    ("scenes:\n- {name: A, image: x.png}", "name 'A' must be lower-case"),
    ("scenes:\n- {name: a, image: x.png, frames: f}", "needs exactly one of image, frames, video"),
    ("scenes:\n- {name: a, image: x.png}\n- {name: a, image: y.png}", "scene name(s) used twice: a"),
    ("scenes:\n- {name: a, image: x.png, colour: red}", "unknown key(s) ['colour']"),
    ("scenes:\n- {name: a, image: x.png, train: {out: elsewhere}}", "--out is set by zoo build"),
    ("scenes:\n- {name: a, image: x.png, train: {seed: [1]}}", "seed must be a string, number or boolean"),
    ("scenes:\n- {name: a, image: x.png, train: {seed: --overwrite}}", "seed must be a string, number or boolean"),
    ("defaults: {width: null}\nscenes:\n- {name: a, image: x.png}", "width must be a string, number or boolean"),
    ("eval: {steps: 3}\nscenes:\n- {name: a, image: x.png}", "eval: unknown option(s) ['steps']"),
    ("precisions: [fp64]\nscenes:\n- {name: a, image: x.png}", "precisions must be a list from"),
    ("scenes: [", "not valid YAML"),
])
def test_bad_manifests_are_one_line_errors_before_anything_runs(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        read_manifest(path)
    assert message in str(e.value) and str(e.value).startswith(str(path))
    res = CliRunner().invoke(zoo_cli, ["build", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and message in res.output
    assert not (tmp_path / "out").exists()


def test_a_manifest_maps_to_the_commands_options(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("defaults: {iters: 10, guard: false}\nscenes:\n"
                    "- {name: a, frames: clips/a, mask: clips/a-masks, train: {seed: 2, iters: 20}, training_data: false,"
                    " license: cc-by-4.0, image_license: CC BY 4.0}\n")
    (spec,) = read_manifest(path).scenes
    assert spec.source == tmp_path / "clips/a" and spec.mask == tmp_path / "clips/a-masks"
    assert spec.fit_args() == ["--iters", "20", "--no-guard", "--seed", "2", "--mask", str(tmp_path / "clips/a-masks")]
    assert spec.card_args() == ["--source", "a", "--image-license", "CC BY 4.0", "--license", "cc-by-4.0",
                                "--no-training-data"]


def test_build_trains_evaluates_exports_pushes_skips_and_resumes(hub, tmp_path, monkeypatch):  # noqa: F811
    import huggingface_hub

    api = FakeApi(hub)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: api)
    write_scene(tmp_path / "field")
    path = manifest(tmp_path, [
        {"name": "field", "image": "field/scene.png", "mask": "field/mask.png", "classes": "field/classes.txt",
         "license": "cc0-1.0", "image_license": "CC0"},
        {"name": "broken", "image": "missing.png"},
    ])
    out = tmp_path / "entries"
    args = ["build", str(path), "--out", str(out), "--push", "org"]
    res = CliRunner().invoke(zoo_cli, args)
    assert res.exit_code == 1, res.output   # one scene failed, the other built
    lines = res.output.splitlines()
    assert any(ln.endswith("field: training") for ln in lines) and any(ln.endswith("field: finished") for ln in lines)
    assert any("broken: failed:" in ln and "missing.png" in ln for ln in lines)
    assert "1 of 2 scenes built" in res.output
    pushes = [c for c in api.calls if c[0] == "create_commit"]
    assert [c[1] for c in pushes] == ["org/field", "org/index"]
    index = json.loads((out / "index.json").read_text())
    commit = hub.repos["org/field"].refs["main"]
    assert index["scenes"] == {"field": {"repo": "org/field", "revision": commit,
                                         "files": index["scenes"]["field"]["files"]}}
    card = (out / "field/README.md").read_text()
    assert "## Evaluation" in card and "`trainer eval` on 4 samples" in card and "licence: CC0" in card

    # the pushed index names the scene; a pull of it carries its training frames, so it evaluates alone
    res = CliRunner().invoke(trainer_cli, ["eval", "field", "--index", "hf://org/index/index.json", "--samples", "3",
                                           "--unet-steps", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["training_frames"] == 1

    # again: the finished scene is skipped (nothing trained, nothing pushed), the broken one fails again
    res = CliRunner().invoke(zoo_cli, args)
    assert res.exit_code == 1 and "field: skipped (already built)" in res.output
    assert len([c for c in api.calls if c[0] == "create_commit" and c[1] == "org/field"]) == 1

    # a job killed while exporting: the entry is gone, the run is there; the next run resumes it
    shutil.rmtree(out / "field")
    res = CliRunner().invoke(zoo_cli, ["build", str(path), "--out", str(out)])
    assert "field: resuming training" in res.output and "field: finished" in res.output
    index = json.loads((out / "index.json").read_text())   # without --push: entries by folder
    assert index["scenes"]["field"]["path"] == "field"
    res = CliRunner().invoke(zoo_cli, ["verify", "field", "--index", str(out / "index.json")])
    assert res.exit_code == 0, res.output


def test_a_singan_scene_builds_beside_one_shot_defaults(tmp_path):
    """A scene's train can drop a default (null) that --arch singan does not take; the entry is a SinGAN one."""
    write_scene(tmp_path / "field")
    path = manifest(tmp_path, [{"name": "field-singan", "image": "field/scene.png", "mask": "field/mask.png",
                                "train": {"arch": "singan", "width": None, "batch-size": None, "iters": 2,
                                          "max-size": 48}}],
                    precisions=["fp32", "int8"])
    out = tmp_path / "entries"
    res = CliRunner().invoke(zoo_cli, ["build", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "field-singan" / "config.json").read_text())
    assert config["model"]["arch"] == "singan" and "onnx/generator.int8.onnx" in config["files"]
    assert "## Evaluation" in (out / "field-singan" / "README.md").read_text()
    assert CliRunner().invoke(zoo_cli, ["verify", "field-singan", "--index", str(out / "index.json")]).exit_code == 0
