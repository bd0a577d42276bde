"""Evaluation metrics on constructed inputs with known answers, and `trainer eval` end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import scene_arrays
from trainer import metrics
from trainer.cli import main as trainer_cli
from trainer.run import Run
from trainer.segmenter import mask_alignment
from runtime import training_frames
from zoo.cli import main as zoo_cli
from zoo.entry_config import EntryConfig
from zoo.errors import UserError
from zoo.quality import Scorer, reference

COINS = Path(__file__).parents[1] / "data/coins/image.png"
COLOURS = np.array([[60, 130, 60], [200, 40, 40], [40, 40, 200]], np.uint8)


def rect_scenes(n, seed, h=32, w=48):
    """Random red and blue rectangles on a noisy green ground; the mask says which is which."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for c in (1, 2):
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 12)
            masks[i, y:y + rng.integers(6, 10), x:x + rng.integers(6, 12)] = c
    return COLOURS[masks] + rng.integers(0, 30, (n, h, w, 3), dtype=np.uint8), masks


def test_identical_samples_have_no_diversity_and_are_all_copies():
    img, _ = scene_arrays(64, 96)
    same = np.stack([img] * 6)
    assert metrics.pixel_diversity(same, img[None]) == 0
    assert metrics.ms_ssim_diversity(same)["mean"] == pytest.approx(1.0, abs=1e-4)
    dist, _ = metrics.nearest_training_view(same, img[None])
    assert np.all(dist < 1e-3)
    noise = np.random.default_rng(0).integers(0, 256, (6, 64, 96, 3), dtype=np.uint8)
    assert metrics.pixel_diversity(noise, img[None]) > 1


def test_flipped_shifted_and_cropped_copies_count_as_copies():
    img = np.asarray(Image.open(COINS).convert("RGB").resize((160, 128), Image.BILINEAR))
    h, w = img.shape[:2]
    shifted = np.pad(img, ((0, 0), (24, 0), (0, 0)), mode="reflect")[:, :w]     # the training's shift, mirrored fill
    crop = np.asarray(Image.fromarray(img[6:6 + 109, 12:12 + 136]).resize((w, h), Image.BILINEAR))
    zoom = np.asarray(Image.fromarray(img[32:96, 40:120]).resize((w, h), Image.BILINEAR))
    other = np.asarray(Image.open(COINS).convert("RGB").rotate(90, expand=True).resize((w, h)))
    views = np.stack([img[:, ::-1], shifted, crop, zoom, other])
    dist, where = metrics.nearest_training_view(views, img[None])
    below = metrics.near_copy_threshold(img[None])
    assert below == pytest.approx(0.06, abs=0.002)  # the coins calibration
    assert np.all(dist[:4] < below) and dist[4] > 2 * below, dist
    assert where[0][1] is True and where[3][2] == 0.5    # found as the mirror image; as a 2x zoom
    view = metrics.training_view(img[None], where[0])
    assert np.abs(view.astype(int) - img[:, ::-1]).mean() < 2
    # the same views of a low-contrast version: the verdicts must not change (an absolute threshold called
    # the rotated image a copy here)
    dim = lambda x: (x.astype(np.float32) * 0.3 + 90).round().astype(np.uint8)  # noqa: E731
    dist, _ = metrics.nearest_training_view(dim(views), dim(img)[None])
    below = metrics.near_copy_threshold(dim(img)[None])
    assert np.all(dist[:4] < below) and dist[4] > 2 * below and dist[4] < 0.06, (dist, below)


def test_a_copy_repeats_the_layout_too_when_there_is_a_mask():
    """Flipped, shifted, cropped and zoomed copies of image and mask are copies; the same pavement with the objects
    moved have a new layout."""
    img = np.asarray(Image.open(COINS).convert("RGB").resize((160, 128), Image.BILINEAR))
    mask = np.asarray(Image.open(COINS.with_name("mask.png")).resize((160, 128), Image.NEAREST))
    h, w = mask.shape
    views = [(img[:, ::-1], mask[:, ::-1]),
             (np.pad(img, ((0, 0), (24, 0), (0, 0)), mode="reflect")[:, :w], np.pad(mask, ((0, 0), (24, 0)), mode="reflect")[:, :w]),
             *[(np.asarray(Image.fromarray(img[y:y + hh, x:x + ww]).resize((w, h), Image.BILINEAR)),
                np.asarray(Image.fromarray(mask[y:y + hh, x:x + ww]).resize((w, h), Image.NEAREST)))
               for y, x, hh, ww in ((6, 12, 109, 136), (32, 40, 64, 80))]]
    # the objects moved: every coin pixel replaced by ground (its local mean), a coin-sized blob drawn elsewhere
    moved_img, moved_mask = img.copy(), np.zeros_like(mask)
    moved_img[mask > 0] = np.median(img[mask == 0], 0)
    moved_img[90:110, 10:30], moved_mask[90:110, 10:30] = img[mask > 0].mean(0).astype(np.uint8), 1
    images = np.stack([v[0] for v in views] + [moved_img])
    masks = np.stack([v[1] for v in views] + [moved_mask])
    dist, where = metrics.nearest_training_view(images, img[None])
    layout = metrics.layout_iou(masks, mask[None], where, 2)
    assert np.all(layout[:4] >= 0.85), layout    # the search's discrete region sizes cost the crop ~0.1
    assert layout[4] < metrics.LAYOUT_COPY, layout


def test_class_frequencies_and_iou_known_answers():
    gt = np.zeros((1, 4, 4), np.uint8)
    gt[0, :2] = 1                       # 8 pixels of class 1
    pred = gt.copy()
    pred[0, 2, :2] = 1                  # 2 false positives
    assert metrics.iou_per_class(pred, gt, 3) == [pytest.approx(600 / 8), pytest.approx(80.0), None]
    f = metrics.class_frequencies(pred, gt, 3)
    assert f["generated"] == [0.375, 0.625, 0] and f["training"] == [0.5, 0.5, 0] and f["total_variation"] == 0.125
    probs = np.eye(3)[gt].transpose(0, 3, 1, 2)          # perfect one-hot probabilities
    assert metrics.thresholded_iou(probs, gt)[:2] == [100.0, 100.0]
    probs = np.full((1, 3, 4, 4), 1 / 3)                  # never above 0.5: no pixel predicted
    assert metrics.thresholded_iou(probs, gt)[:2] == [0.0, 0.0]


def test_mask_alignment_separates_aligned_from_shuffled_masks():
    torch.set_num_threads(2)
    images, masks = rect_scenes(64, 0)
    real, real_masks = rect_scenes(2, 1)
    aligned = mask_alignment(images, masks, real, real_masks, 3, steps=200, seed=0)
    shuffled = masks[np.random.default_rng(5).permutation(len(masks))]
    wrong = mask_alignment(images, shuffled, real, real_masks, 3, steps=200, seed=0)
    assert aligned["miou"] > 90 and wrong["miou"] < 50, (aligned, wrong)
    assert aligned["miou_thresholded"] > wrong["miou_thresholded"] + 30


def test_quality_score_ranks_noise_below_the_scene():
    img, _ = scene_arrays(64, 96)
    ref = reference(img[None])
    scorer = Scorer(ref["mean"], ref["cov"])
    noise = np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    other, _ = scene_arrays(64, 96, seed=3)
    s_same, s_other, s_noise = scorer.scores(np.stack([img, other, noise[0]]))
    assert s_same < 1e-6 < s_other < s_noise


def _random_weights(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import alexnet, inception_v3

    torch.manual_seed(0)
    inc = tmp_path / "inception.safetensors"
    save_file(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), str(inc))
    alex = tmp_path / "alexnet.pth"
    torch.save(alexnet(weights=None).state_dict(), alex)
    return inc, alex


def test_sifid_and_lpips_need_weight_files_and_have_zero_for_copies(tmp_path):
    from trainer.backbones import lpips_metrics, sifid

    inc, alex = _random_weights(tmp_path)   # random weights: only to check the arithmetic
    img, _ = scene_arrays(64, 96)
    other, _ = scene_arrays(64, 96, seed=4)
    s = sifid(np.stack([img, other]), img[None], inc)
    assert s["per_sample"][0] == pytest.approx(0, abs=1e-6) and s["per_sample"][1] > 1e-4
    pairs = np.array([[0, 1]])
    lp = lpips_metrics(np.stack([img, img]), np.stack([img, img]), alex, pairs)
    assert lp["diversity"] == pytest.approx(0, abs=1e-6) and lp["dist_to_train"] == pytest.approx(0, abs=1e-6)
    from zoo.errors import UserError

    with pytest.raises(UserError, match="not InceptionV3 weights"):
        sifid(img[None], img[None], alex)


def test_trainer_eval_on_a_run_and_an_entry(run_dir, entry, scene, tmp_path):
    res = CliRunner().invoke(trainer_cli, ["eval", str(run_dir), "--samples", "6", "--unet-steps", "5",
                                           "--report", str(tmp_path / "r"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["samples"] == 6 and len(r["per_sample"]) == 6 and not r["sifid"]["available"]
    assert 0 <= r["mask_alignment"]["miou"] <= 100 and set(r["definitions"]) >= {"miou", "pixel_diversity"}
    assert json.loads((tmp_path / "r/report.json").read_text())["scene"] == str(run_dir)
    assert "<table>" in (tmp_path / "r/report.html").read_text()
    # the entry alone (its training/ frames), the same samples: the run through PyTorch, the entry through onnxruntime
    res = CliRunner().invoke(trainer_cli, ["eval", str(entry), "--samples", "4", "--unet-steps", "5", "--json", "-q"])
    assert res.exit_code == 0, res.output
    scores = [s["dist_to_train"] for s in json.loads(res.output)["per_sample"]]
    assert scores == pytest.approx([s["dist_to_train"] for s in r["per_sample"][:4]], abs=2e-3)
    # an entry exported without its training data needs the image passed in
    private = tmp_path / "private"
    res = CliRunner().invoke(zoo_cli, ["export", str(run_dir), "--out", str(private), "--no-training-data", "-q"])
    assert res.exit_code == 0, res.output
    assert not (private / "training").exists() and "not included" in (private / "README.md").read_text()
    res = CliRunner().invoke(trainer_cli, ["eval", str(private)])
    assert res.exit_code == 1 and "pass the training image with --image" in res.output
    image, mask = scene
    res = CliRunner().invoke(trainer_cli, ["eval", str(private), "--samples", "4", "--unet-steps", "5",
                                           "--image", str(image), "--mask", str(mask), "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert [s["dist_to_train"] for s in json.loads(res.output)["per_sample"]] == pytest.approx(scores, abs=1e-6)


def test_entries_carry_their_training_frames_exactly(run_dir, entry, tmp_path):
    frames, masks = Run.open(run_dir).frames()
    config = EntryConfig.read(entry / "config.json")
    got_frames, got_masks = training_frames.read(entry, config)
    assert np.array_equal(got_frames, frames) and np.array_equal(got_masks, masks)
    assert "licence" in (entry / "README.md").read_text().split("training frames:")[1].splitlines()[0]
    # hostile or damaged frames are one-line errors (a pull has hash-checked them; a local folder has not)
    copy = tmp_path / "entry"
    shutil.copytree(entry, copy)
    Image.new("RGB", (7, 5)).save(copy / "training/frame-000.png")
    with pytest.raises(UserError, match="frame-000.png: expected a .* RGB PNG, found a 7x5"):
        training_frames.read(copy, config)
    bad = Image.fromarray(np.full(masks[0].shape, 9, np.uint8), "P")
    bad.putpalette([v for c in range(10) for v in (c, c, c)])
    bad.save(copy / "training/mask-000.png")
    shutil.copyfile(entry / "training/frame-000.png", copy / "training/frame-000.png")
    with pytest.raises(UserError, match="holds class 9"):
        training_frames.read(copy, config)
    (copy / "training/mask-000.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="mask-000.png: unreadable"):
        training_frames.read(copy, config)
