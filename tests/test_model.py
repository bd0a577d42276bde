import json

import pytest
import torch
from click.testing import CliRunner

from trainer.cli import main
from trainer.config import auto_config
from trainer.discriminator import Discriminator
from trainer.feature_aug import FeatureAugment
from trainer.generator import Generator
from trainer.resampling import ConvPool, UpsampleConv
from trainer.train import image_pyramid, straight_through


def describe(*args):
    res = CliRunner().invoke(main, ["describe", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_parameter_counts_match_reference():
    plain = describe("--size", "192x320")
    masked = describe("--size", "192x320", "--classes", "3")
    assert plain["g_params"] == 5_886_581 and masked["g_params"] == 5_887_448
    assert plain["d_params"] == 1_256_497 and masked["d_params"] == 2_443_581
    assert plain["latent_grid"] == [3, 5] and plain["g_blocks"] == 7
    assert (plain["d_blocks"], plain["d_lowlevel"]) == (7, 3)
    assert plain["g_macs"] / 1e9 == pytest.approx(7.16, abs=0.01)
    assert plain["d_macs"] / 1e9 == pytest.approx(6.15, abs=0.01)
    small = describe("--size", "64x96", "--classes", "3")
    assert small["latent_grid"] == [4, 6] and small["g_blocks"] == 5
    assert (small["d_blocks"], small["d_lowlevel"]) == (6, 2)
    assert small["g_params"] == 3_529_682 and small["d_params"] == 1_705_580


def test_auto_config_reference_examples_and_extension():
    c = auto_config(480, 854, max_size=330)
    assert (c.height, c.width, c.grid_h, c.grid_w, c.g_blocks, c.d_blocks, c.d_lowlevel) == (192, 320, 3, 5, 7, 7, 3)
    c = auto_config(480, 854, max_size=660)
    assert (c.height, c.width, c.g_blocks, c.d_blocks, c.d_lowlevel) == (384, 640, 8, 7, 4)
    c = auto_config(480, 854, max_size=1024)
    assert (c.height, c.width, c.grid_h, c.grid_w, c.g_blocks) == (512, 896, 4, 7, 8)
    # our extension below 5 blocks is used only where no reference depth fits
    assert auto_config(50, 50).g_blocks == 5
    assert auto_config(40, 40).g_blocks == 4
    assert auto_config(16, 24).g_blocks == 3


def test_generator_reference_state_dict_layout():
    G = Generator(auto_config(64, 96, num_classes=3))
    keys = G.state_dict().keys()
    assert "first_linear.weight" in keys and "body.0.conv1.weight_orig" in keys
    assert "body.4.conv_sc.weight_u" in keys and "rgb_converters.4.weight_v" in keys
    assert "mask_converter.weight" in keys and "body.0.conv_sc.bias" not in keys
    assert len(keys) == 79  # as reference-checkpoint.md lists for this size
    assert tuple(G.state_dict()["first_linear.weight"].shape) == (64, 256, 4, 6)


@pytest.mark.parametrize("classes", [0, 3])
def test_discriminator_output_shapes(classes):
    cfg = auto_config(64, 96, num_classes=classes, width_mult=0.25)
    G, D = Generator(cfg), Discriminator(cfg)
    b = 2
    out = G(torch.randn(b, 64), n_rgb=cfg.d_lowlevel, features=True)
    assert [tuple(x.shape) for x in out.images] == [(b, 3, 32, 48), (b, 3, 64, 96)]
    assert len(out.features) == cfg.g_blocks
    mask = None
    if classes:
        assert tuple(out.mask_logits.shape) == (b, classes, 64, 96)
        mask = straight_through(out.mask_logits, bernoulli=False)
    d = D(out.images[::-1], mask, augment=FeatureAugment(1.0))
    assert [tuple(x.shape) for x in d.lowlevel] == [(b, 1, 32, 48), (b, 1, 16, 24)]
    n_hi = cfg.d_blocks - cfg.d_lowlevel
    content = (classes * b, classes + 1) if classes else (b, 1)
    assert [tuple(x.shape) for x in d.content] == [content] * n_hi
    assert [tuple(x.shape) for x in d.layout] == [(b, 1, 8, 12), (b, 1, 4, 6), (b, 1, 2, 3), (b, 1, 1, 1)]
    if classes:
        assert tuple(d.small_mask.shape) == (b, classes, 16, 24)


def test_straight_through_gradient_reaches_mask_head():
    cfg = auto_config(24, 40, num_classes=3, width_mult=0.25)
    G, D = Generator(cfg), Discriminator(cfg)
    for bernoulli in (True, False):
        G.zero_grad()
        out = G(torch.randn(2, 64), n_rgb=cfg.d_lowlevel)
        hard = straight_through(out.mask_logits, bernoulli)
        assert set(hard.detach().unique().tolist()) <= {0.0, 1.0} or torch.allclose(hard, hard.round(), atol=1e-6)
        d = D(out.images[::-1], hard)
        sum(x.float().pow(2).mean() for x in d.content).backward()
        assert G.mask_converter.weight.grad is not None and G.mask_converter.weight.grad.abs().sum() > 0


def test_straight_through_forward_is_one_hot_after_warmup():
    logits = torch.randn(2, 4, 5, 6)
    hard = straight_through(logits, bernoulli=False)
    assert torch.allclose(hard.sum(1), torch.ones(2, 5, 6), atol=1e-6)
    assert torch.equal(hard.argmax(1), logits.argmax(1))


def test_straight_through_protect_spares_only_a_rare_class_drawn_too_little():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, 8)
    logits[:, 3] -= 5  # class 3 wins no pixel...
    logits[0, 3, :3] += 20  # ...but half of sample 0
    logits.requires_grad_(True)
    upstream = torch.randn(3, 4, 6, 8)
    upstream[:, 3] += 3  # D would like class 3 even less than the others: the softmax drains it
    share = torch.tensor([0.33, 0.33, 0.32, 0.02])
    grads = {}
    for mode in ("softmax", "protect"):
        logits.grad = None
        hard = straight_through(logits, False, grad=mode, share=share)
        assert torch.equal(hard, straight_through(logits, False))  # the same hard mask forward
        (hard * upstream).sum().backward()
        grads[mode] = logits.grad.clone()
    soft, protect = grads["softmax"], grads["protect"]
    assert soft[1:, 3].sum() > 0  # the reference's estimator lowers the rare class where it is missing...
    assert protect[1:, 3].max() <= 0  # ...protect never does
    assert torch.allclose(protect[0], soft[0], atol=1e-6)  # sample 0 draws it above its share: the plain softmax
    assert protect.sum(1).abs().max() < 1e-6
    logits.grad = None
    (straight_through(logits, False, grad="protect", share=torch.tensor([0.02, 0.02, 0.02, 0.94])) * upstream
     ).sum().backward()  # classes 0-2 drawn above their share, class 3 not rare: nothing is spared
    assert torch.allclose(logits.grad, soft, atol=1e-6)
    with pytest.raises(ValueError, match="share"):
        straight_through(logits, False, grad="protect")
    with pytest.raises(ValueError, match="flip"):
        straight_through(logits, False, grad="flip")


def test_straight_through_protect_with_nothing_vanishing_is_the_softmax():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 5, 7, requires_grad=True)
    upstream = torch.randn(2, 3, 5, 7)
    grads = []
    for mode in ("softmax", "protect"):
        logits.grad = None
        (straight_through(logits, False, grad=mode, share=torch.zeros(3)) * upstream).sum().backward()
        grads.append(logits.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)  # rare classes, none drawn too little: equal up to rounding
    logits.grad = None
    (straight_through(logits, False, grad="protect", share=torch.tensor([0.5, 0.3, 0.2])) * upstream).sum().backward()
    assert torch.equal(logits.grad, grads[0])  # no rare class: the softmax's own backward, so training is bit-identical


def test_pyramid_halves_resolution():
    p = image_pyramid(torch.randn(1, 3, 32, 48), 3)
    assert [tuple(x.shape[-2:]) for x in p] == [(32, 48), (16, 24), (8, 12)]


@pytest.mark.parametrize("size", [(8, 10), (7, 9), (1, 5)])
def test_fused_resampling_convs_equal_the_unfused_pairs(size):
    """UpsampleConv = nearest x2 then conv3x3; ConvPool = conv3x3 then avg_pool2d(2) (odd sides floored,
    no pooling below 2 pixels, like the discriminator's _pool): outputs and gradients, in float64."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    for fused in (UpsampleConv(3, 4), ConvPool(3, 4)):
        fused = fused.double()
        plain = torch.nn.Conv2d(3, 4, 3, padding=1).double()
        plain.load_state_dict(fused.state_dict())
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        if isinstance(fused, UpsampleConv):
            ref = plain(torch.nn.functional.interpolate(xb, scale_factor=2.0, mode="nearest"))
        else:
            ref = plain(xb)
            ref = torch.nn.functional.avg_pool2d(ref, 2) if min(size) >= 2 else ref
        out = fused(xa)
        assert out.shape == ref.shape and torch.allclose(out, ref)
        g = torch.randn_like(out)
        out.backward(g)
        ref.backward(g)
        assert torch.allclose(xa.grad, xb.grad)
        assert torch.allclose(fused.weight.grad, plain.weight.grad) and torch.allclose(fused.bias.grad, plain.bias.grad)


@pytest.mark.parametrize("size", [(8, 10), (7, 9), (1, 5), (1, 1)])
def test_the_export_forms_of_the_upsampling_conv_are_the_same_function(size):
    """UpsampleConv's exported forms, unfused (resize + conv3x3) and phased (2x2 phase conv, then a 0/1 grouped
    transposed conv or slices and a transpose in channels-last layout), equal it in float64: the phase kernels,
    their padding and the placement of every phase."""
    torch.manual_seed(0)
    fused = UpsampleConv(6, 5).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    with torch.no_grad():
        ref = fused(x)
        for form in (fused.unfused(), fused.phased(), fused.phased(interleave="nhwc")):
            out = form.double()(x)
            assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6)   # the forms hold float32 weights


def test_sampling_macs_count_the_phase_form_the_export_runs():
    from export.graph import fold_spectral_norm
    from trainer.describe import describe

    cfg = auto_config(96, 160, num_classes=3, width_mult=0.25)
    G = fold_spectral_norm(Generator(cfg), upsampling="phases")
    macs = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: macs.__setitem__(0, macs[0] + o.numel() * m.weight[0].numel()))
             for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        G(torch.randn(1, cfg.noise_dim), n_rgb=1)
    for h in hooks:
        h.remove()
    assert describe(cfg)["g_macs_sampling"] == macs[0]   # Conv2d layers; the 0/1 selector moves, it does not multiply


def test_mca_area_masks_keep_thin_structures():
    """A 1-px line is 1/8 of a feature cell at 1/8 resolution: area resizing keeps it as a fraction in every
    cell it crosses; nearest sampling keeps it only where a sampled pixel happens to land on it."""
    cfg = auto_config(64, 96, num_classes=2, width_mult=0.25)
    D = Discriminator(cfg).eval()
    ids = torch.zeros(1, 64, 96, dtype=torch.long)
    ids[:, :, 37] = 1  # a vertical line, 1 px wide
    mask = torch.nn.functional.one_hot(ids, 2).permute(0, 3, 1, 2).float()
    pyramid = image_pyramid(torch.zeros(1, 3, 64, 96), cfg.d_lowlevel)
    with torch.no_grad():
        area = D(pyramid, mask, mask_resize="area").small_mask
        nearest = D(pyramid, mask, mask_resize="nearest").small_mask
    factor = 64 // area.shape[-2]
    assert torch.allclose(area.sum(1), torch.ones_like(area[:, 0]))  # class fractions per cell
    column = area[0, 1, :, 37 // factor]
    assert torch.allclose(column, torch.full_like(column, 1 / factor))  # the line's share of every cell it crosses
    assert area[0, 1].sum() * factor * factor == pytest.approx(64)  # its pixel count survives
    assert nearest[0, 1].sum() == 0  # nearest sampling lost it
