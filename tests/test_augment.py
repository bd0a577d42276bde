import torch

from trainer.augment import N_OPS, augment, random_affine, warp
from trainer.feature_aug import FeatureAugment

COLOURS = torch.tensor([[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]])


def blocks_mask(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(b, h, w, dtype=torch.long)
    for i in range(b):
        for c in (1, 2):
            y, x = torch.randint(0, h - 8, (2,), generator=g).tolist()
            hh, ww = torch.randint(3, 8, (2,), generator=g).tolist()
            ids[i, y:y + hh, x:x + ww] = c
    return ids


def test_augmentation_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    b, h, w = 64, 32, 48
    ids = blocks_mask(b, h, w)
    image = COLOURS[ids].permute(0, 3, 1, 2)  # colours encode classes
    mask = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    half = torch.nn.functional.interpolate(image, scale_factor=0.5, mode="bilinear")
    (aug_img, aug_half), aug_mask = augment([image, half], mask, p=1.0)
    assert aug_half.shape == half.shape
    assert torch.equal(aug_mask.sum(1), torch.ones(b, h, w))  # masks stay hard one-hot
    decoded = torch.cdist(aug_img.permute(0, 2, 3, 1).reshape(-1, 3), COLOURS).argmin(1).view(b, h, w)
    agreement = (decoded == aug_mask.argmax(1)).float().mean()
    assert agreement > 0.97  # only bilinear edges differ
    assert (aug_mask.argmax(1) != ids).any()  # something did move


def test_same_geometry_for_image_and_mask_exactly():
    theta = random_affine(32, 1.0, aspect=1.5, generator=torch.Generator().manual_seed(1))
    ids = blocks_mask(32, 32, 48, seed=1)
    image = COLOURS[ids].permute(0, 3, 1, 2)
    mask = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    warped_img = warp(image, theta, mode="nearest")
    warped_mask = warp(mask, theta, mode="nearest")
    assert torch.equal(warped_img, COLOURS[warped_mask.argmax(1)].permute(0, 3, 1, 2))


def test_every_augmentation_is_drawn_and_p_zero_is_identity():
    g = torch.Generator().manual_seed(0)
    theta = random_affine(500, 1.0, generator=g)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert not (theta == identity).all(2).all(1).any()
    assert (theta[:, 0, 0] < 0).any() and (theta[:, 0, 0] == 0.5).any()  # flips and 2x zooms occur
    assert N_OPS == 5
    x = torch.randn(4, 3, 8, 8)
    assert augment([x], None, p=0.0)[0][0] is x


def _objects_whole(before, after, ids):
    """Every object of every sample is either untouched or entirely replaced."""
    for b in range(ids.shape[0]):
        for c in ids[b].unique().tolist():
            if c == 0:
                continue
            region = ids[b] == c
            same = (after[b][:, region] == before[b][:, region]).all(0)
            assert same.all() or (~same).all(), f"sample {b} object {c} was cut"


def test_feature_augmentation_never_splits_an_object():
    for seed in range(10):
        torch.manual_seed(seed)
        b, c, h, w = 6, 4, 16, 24
        ids = blocks_mask(b, h, w, seed=seed)
        feats = torch.randn(b, c, h, w)  # unique values: any copy is visible
        mask = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
        fa = FeatureAugment(p=1.0)
        out = fa.layout(feats, mask)
        assert not torch.equal(out, feats)
        _objects_whole(feats, out, ids)
        for op in (fa._copy_background, fa._swap_uncut, fa._remove_object,
                   lambda x, i: fa._paste_object(x, i, True), lambda x, i: fa._paste_object(x, i, False)):
            single, new_ids = op(feats, ids)
            _objects_whole(feats, single, ids)
            changed = (single != feats).any(1)
            # the class map moves with the features: a pixel whose class changed got new features
            assert (changed | (new_ids == ids)).all()


def test_paste_moves_a_whole_object_onto_background():
    torch.manual_seed(3)
    ids = torch.zeros(2, 16, 16, dtype=torch.long)
    ids[:, 2:6, 2:5] = 1
    feats = torch.randn(2, 3, 16, 16)
    fa = FeatureAugment(p=1.0)
    out, new_ids = fa._paste_object(feats, ids, from_partner=False)
    for b in range(2):
        assert (new_ids[b] == 1).sum() == 2 * 12  # a duplicate of the 12-pixel object
        moved = (new_ids[b] == 1) & (ids[b] == 0)
        assert moved.sum() == 12 and (out[b][:, moved] != feats[b][:, moved]).all()
        assert torch.equal(torch.sort(out[b][:, moved].flatten()).values,
                           torch.sort(feats[b][:, ids[b] == 1].flatten()).values)


def test_content_augmentation_mixes_and_drops_channels():
    torch.manual_seed(0)
    b, c = 5, 40
    vec = torch.arange(1, b * c + 1, dtype=torch.float).view(b, c, 1, 1)
    out = FeatureAugment(p=1.0).content(vec, b).view(b, c)
    src = vec.view(b, c)
    for i in range(b):
        changed = out[i] != src[i]
        assert 4 <= changed.sum() <= 24  # 10-30 % mixed, 10-30 % dropped
        mixed = out[i][changed & (out[i] != 0)]
        assert (mixed == src[(i + 1) % b][changed & (out[i] != 0)]).all()
    # with masks only the background vectors (class 0, the first B rows) change
    masked = torch.randn(3 * b, c, 1, 1)
    out = FeatureAugment(p=1.0).content(masked, b)
    assert torch.equal(out[b:], masked[b:]) and not torch.equal(out[:b], masked[:b])
