from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import save_palette_mask, scene_arrays
from trainer.cli import main
from trainer.data import DataError, load_scene

TINY = ["--max-size", "40", "--width", "0.125", "--batch-size", "2", "--iters", "1", "-q"]


def run_fit(*args):
    return CliRunner().invoke(main, ["fit", *map(str, args), *TINY])


# -- mask encodings ---------------------------------------------------------------------------------------
def test_palette_mask_keeps_ids_and_palette(scene):
    img, mask = scene
    s = load_scene(img, mask)
    assert s.mask_encoding == "palette" and s.num_classes == 3
    assert s.palette == [[0, 0, 0], [230, 30, 30], [30, 30, 230]]
    assert np.array_equal(s.masks[0], scene_arrays()[1])


def test_grayscale_ids_are_renumbered(tmp_path):
    img, ids = scene_arrays()
    Image.fromarray(img).save(tmp_path / "i.png")
    Image.fromarray((ids * 7).astype(np.uint8), "L").save(tmp_path / "m.png")  # ids 0, 7, 14
    s = load_scene(tmp_path / "i.png", tmp_path / "m.png")
    assert s.mask_encoding == "ids" and s.source_ids == [0, 7, 14]
    assert np.array_equal(s.masks[0], ids)


def test_binary_antialiased_mask(tmp_path):
    img, ids = scene_arrays()
    binary = np.where(ids > 0, 255, 0).astype(np.uint8)
    binary[ids.shape[0] // 5, :] = np.where(binary[ids.shape[0] // 5, :] > 0, 200, 60)  # soft edge row
    Image.fromarray(img).save(tmp_path / "i.jpg")
    Image.fromarray(binary, "L").save(tmp_path / "m.png")
    s = load_scene(tmp_path / "i.jpg", tmp_path / "m.png")
    assert s.mask_encoding == "binary" and s.num_classes == 2
    assert np.array_equal(s.masks[0], (ids > 0).astype(np.uint8))


def test_rgb_colour_mask_classes_and_names(tmp_path):
    img, ids = scene_arrays()
    colours = np.array([[0, 0, 0], [250, 200, 0], [0, 128, 255]], np.uint8)
    Image.fromarray(img).save(tmp_path / "i.png")
    Image.fromarray(colours[ids]).save(tmp_path / "m.png")
    (tmp_path / "names.txt").write_text("sky\nsun\nsea\n")
    s = load_scene(tmp_path / "i.png", tmp_path / "m.png", class_names_file=tmp_path / "names.txt")
    assert s.mask_encoding == "rgb" and s.class_names == ["sky", "sun", "sea"]
    assert s.palette == [[0, 0, 0], [0, 128, 255], [250, 200, 0]]  # background first, then sorted colours
    assert np.array_equal(colours[ids], np.array(s.palette, np.uint8)[s.masks[0]])


def test_frame_folder_with_masks_by_stem(tmp_path):
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    for i in range(3):
        img, ids = scene_arrays(seed=i)
        Image.fromarray(img).save(frames / f"f{i:02d}.jpg")
        save_palette_mask(masks / f"f{i:02d}.png", ids)
    s = load_scene(frames, masks)
    assert s.names == ["f00", "f01", "f02"] and len(s.masks) == 3 and s.num_classes == 3
    s = load_scene(frames, masks, every=2, max_frames=5)
    assert s.names == ["f00", "f02"]
    assert load_scene(frames, masks, every=2).names == ["f00", "f02"]
    assert load_scene(frames, masks, max_frames=2).names == ["f00", "f01"]


def test_video_frames_every_and_max(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (80, 48), fps=10, macro_block_size=1)
    writer.send(None)
    for i in range(9):
        img, _ = scene_arrays(seed=i)
        writer.send(np.ascontiguousarray(img))
    writer.close()
    s = load_scene(path, every=3, max_frames=2)
    assert s.names == ["000000", "000003"] and s.frames[0].shape == (48, 80, 3)
    res = CliRunner().invoke(main, ["fit", str(path), "--every", "4", "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 0, res.output


def test_frames_of_different_sizes_are_resized_with_a_warning(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(scene_arrays()[0]).save(frames / "a.png")
    Image.fromarray(scene_arrays(60, 100)[0]).save(frames / "b.png")
    res = CliRunner().invoke(main, ["fit", str(frames), "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "resizing to 80x48" in res.output


# -- bad input: one line, exit 1, nothing written -----------------------------------------------------------
def _bad(tmp_path, args, expect):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["fit", *map(str, args), "--out", str(out), *TINY])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists()


# -- image encodings (issue 12, medium 6 and 7) ----------------------------------------------------------
def test_wide_and_unusual_image_modes_read_as_their_8_bit_picture(tmp_path):
    from trainer.data import read_image

    ramp = np.linspace(0, 1, 48 * 80).reshape(48, 80)
    want = np.rint(ramp * 255).astype(np.uint8)
    Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")   # once: all white
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "f.tif")                       # once: all black
    for name in ("g16.png", "f.tif"):
        got = read_image(tmp_path / name)
        assert got.shape == (48, 80, 3) and got.dtype == np.uint8
        assert np.abs(got[..., 0].astype(int) - want).max() <= 1, name
    Image.new("CMYK", (80, 48), (0, 255, 255, 0)).save(tmp_path / "c.tif")
    assert tuple(read_image(tmp_path / "c.tif")[0, 0]) == (255, 0, 0)
    Image.new("LA", (80, 48), (100, 50)).save(tmp_path / "la.png")
    assert tuple(read_image(tmp_path / "la.png")[0, 0]) == (100, 100, 100)
    Image.fromarray((ramp * 1000 - 500).astype(np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(DataError, match="hdr.tif: F pixels range -500 .. 500"):
        read_image(tmp_path / "hdr.tif")


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with orientation 6 (rotate 90 degrees clockwise to view) is trained
    upright, so the mask drawn on the upright picture fits it."""
    img, mask = scene_arrays()                       # upright: 48 x 80
    stored = np.rot90(img, 1)                        # what the camera wrote: 80 x 48
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "photo.png", exif=exif)
    save_palette_mask(tmp_path / "mask.png", mask)
    s = load_scene(tmp_path / "photo.png", tmp_path / "mask.png")
    assert np.array_equal(s.frames[0], img) and np.array_equal(s.masks[0], mask)


def test_decompression_bomb_is_one_line(tmp_path, monkeypatch, scene):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    res = run_fit(scene[0], "--out", tmp_path / "run")
    assert res.exit_code == 1 and "decompression-bomb limit" in res.output and res.output.count("\n") == 1


@pytest.mark.parametrize("args,expect", [
    (["--size", "100000x100000"], "is too large"),
    (["--size", "96x160", "--max-size", "64"], "38x64: at this size no generator depth"),
    (["--size", "100x400"], "aspect ratio above 2.33"),
])
def test_describe_names_the_real_reason_a_size_fails(args, expect):
    res = CliRunner().invoke(main, ["describe", *args])
    assert res.exit_code == 1 and expect in res.output, res.output


@pytest.mark.parametrize("option,value", [("--aug-prob", "5"), ("--lambda-dr", "-3"), ("--ema-decay", "7"),
                                          ("--batch-size", "0"), ("--iters", "0"), ("--width", "0")])
def test_fit_refuses_out_of_range_options(scene, tmp_path, option, value):
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(tmp_path / "r"), option, value])
    assert res.exit_code == 1 and f"Invalid value for '{option}'" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_missing_image(tmp_path):
    _bad(tmp_path, [tmp_path / "nope.png"], "nope.png: no such file")


def test_corrupt_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    _bad(tmp_path, [tmp_path / "bad.png"], "bad.png: cannot read image")


def test_truncated_image(tmp_path, scene):
    data = scene[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _bad(tmp_path, [tmp_path / "cut.png"], "cut.png: cannot read image")


def test_mask_size_mismatch(tmp_path, scene):
    save_palette_mask(tmp_path / "small.png", np.zeros((10, 10), np.uint8) + np.eye(10, dtype=np.uint8))
    _bad(tmp_path, [scene[0], "--mask", tmp_path / "small.png"], "small.png: mask is 10x10 but its image is 80x48")


def test_mask_with_too_many_classes(tmp_path, scene):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)  # thousands of colours
    Image.fromarray(colours).save(tmp_path / "noisy.png")
    _bad(tmp_path, [scene[0], "--mask", tmp_path / "noisy.png"], "more than 255")


def test_frame_without_mask(tmp_path):
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    for name in ("a", "b"):
        Image.fromarray(scene_arrays()[0]).save(frames / f"{name}.png")
    save_palette_mask(masks / "a.png", scene_arrays()[1])
    _bad(tmp_path, [frames, "--mask", masks], "b.png: no matching mask 'b.*'")


def test_empty_frame_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _bad(tmp_path, [tmp_path / "empty"], "no frame images found")


def test_undecodable_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage" * 10)
    _bad(tmp_path, [tmp_path / "clip.mp4"], "clip.mp4: cannot decode video")


def test_max_size_too_small(tmp_path, scene):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(out), "--max-size", "8"])
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "scene.png" in res.output and "too small" in res.output and not out.exists()


def test_class_names_count_mismatch(tmp_path, scene):
    (tmp_path / "names.txt").write_text("a\nb\n")
    _bad(tmp_path, [scene[0], "--mask", scene[1], "--classes", tmp_path / "names.txt"], "2 names for 3 classes")


def test_existing_out_needs_resume_or_overwrite(tmp_path, scene):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(out), *TINY])
    assert res.exit_code == 1 and "not empty" in res.output and "trainer resume" in res.output
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(out), "--overwrite", *TINY])
    assert res.exit_code == 1 and "not a run folder" in res.output
    assert (out / "keep.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_overwrite_replaces_a_previous_run(tmp_path, scene):
    out = tmp_path / "out"
    assert run_fit(scene[0], "--out", out).exit_code == 0
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--mask", str(scene[1]), "--out", str(out),
                                    "--overwrite", *TINY])
    assert res.exit_code == 0, res.output
    assert '"num_classes": 3' in (out / "config.json").read_text()


def test_an_overwrite_killed_half_way_can_be_repeated(tmp_path, scene, monkeypatch):
    """Killed while clearing the old run (here: inside the checkpoints' rmtree), the folder must still be a run
    that --overwrite replaces, not a folder of leftovers that every command refuses."""
    import shutil

    out = tmp_path / "out"
    assert run_fit(scene[0], "--out", out).exit_code == 0
    rmtree = shutil.rmtree

    def killed(path, *a, **k):
        if Path(path).name == "checkpoints":
            raise KeyboardInterrupt
        rmtree(path, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", killed)
    CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(out), "--overwrite", *TINY])
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    assert (out / "config.json").is_file() and (out / "checkpoints").is_dir()
    res = CliRunner().invoke(main, ["fit", str(scene[0]), "--out", str(out), "--overwrite", *TINY])
    assert res.exit_code == 0, res.output


def test_resume_of_a_non_run(tmp_path):
    res = CliRunner().invoke(main, ["resume", str(tmp_path)])
    assert res.exit_code == 1 and "not a run folder" in res.output


def test_load_scene_error_type(tmp_path):
    with pytest.raises(DataError):
        load_scene(tmp_path / "missing.jpg")
