import torch

from trainer.losses import PairwiseL1, diversity, generator_objective, mca_targets, weighted_ce


def onehot(ids, m):
    return torch.nn.functional.one_hot(torch.tensor(ids), m).permute(0, 3, 1, 2).float()


def test_mca_targets_and_weights_hand_made():
    # sample 0: background 2 px, class 1 2 px; sample 1: background 1 px, class 2 3 px
    mask = onehot([[[0, 0], [1, 1]], [[0, 2], [2, 2]]], 3)
    t, w = mca_targets(mask, fake_class=False)
    # class-major vectors: (c0,b0) (c0,b1) (c1,b0) (c1,b1) (c2,b0) (c2,b1); batch pixel counts 3, 2, 3
    assert t.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 1 / 2, 0, 0, 1 / 3]))
    t, w = mca_targets(mask, fake_class=True)
    assert t.tolist() == [3] * 6
    assert w.tolist() == [1, 1, 1, 0, 0, 1]


def test_weighted_ce_ignores_zero_weights():
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 0, 0, 100.0]])
    t = torch.tensor([0, 0])
    loss = weighted_ce(logits, t, torch.tensor([1.0, 0.0]))
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits[:1], t[:1]))


def test_diversity_value_hand_made():
    level1 = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1, 1)  # pair distances 1, 3, 2 -> 6
    level2 = torch.tensor([[0.0, 0.0], [2.0, 4.0], [0.0, 0.0]]).view(3, 1, 1, 2)  # 3, 0, 3 -> 6
    # summed over pairs and levels (12) times 2 / (g (g - 1)) with g = 2
    assert torch.isclose(diversity([level1, level2]), torch.tensor(12.0))
    three = [level1, level1, level1]  # 6 per level, 18 in all, times 2 / 6
    assert torch.isclose(diversity(three), torch.tensor(6.0))
    assert diversity([level1[:1], level1[:1]]) == 0  # a single sample has no pairs


def test_diversity_sign_generator_pushes_samples_apart():
    f = torch.tensor([0.0, 0.5, 0.6]).view(3, 1, 1, 1).requires_grad_()
    adv = torch.tensor(1.0)
    objective = generator_objective(adv, diversity([f, f * 2]), lambda_dr=0.15)
    assert objective < adv  # diversity is subtracted
    objective.backward()
    with torch.no_grad():
        stepped = f - 0.5 * f.grad
        assert diversity([stepped, stepped * 2]) > diversity([f, f * 2])


def test_diversity_gradient_matches_autograd_of_the_formula():
    """PairwiseL1's hand-written backward against autograd through the plain formula, and a gradcheck."""
    torch.manual_seed(0)
    feats = [torch.randn(5, 4, 6, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
             for _ in range(3)]
    ours = [f.clone().requires_grad_() for f in feats]
    plain = [f.clone().requires_grad_() for f in feats]

    def formula(fs):
        total = sum((f[i] - f[j]).abs().mean() for f in fs for i in range(5) for j in range(i + 1, 5))
        return total * 2.0 / (len(fs) * (len(fs) - 1))

    a, b = diversity(ours), formula(plain)
    assert torch.isclose(a, b)
    (0.7 * a).backward()
    (0.7 * b).backward()
    for x, y in zip(ours, plain):
        assert torch.allclose(x.grad, y.grad) and x.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(PairwiseL1.apply, (torch.randn(4, 2, 3, 3, dtype=torch.float64,
                                                                   requires_grad=True),))


def test_class_frequency_prior_value_and_gradient():
    from trainer.losses import class_frequency_prior

    # 2 samples of 1x2 pixels, 3 classes: argmax shares class0 3/4, class1 1/4, class2 0; training 0.5/0.25/0.25
    logits = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]], [[-1.0, -1.0]]],
                           [[[5.0, 0.0]], [[0.0, 5.0]], [[-1.0, -1.0]]]], requires_grad=True)
    share = torch.tensor([0.5, 0.25, 0.25])
    loss = class_frequency_prior(logits, share)
    assert torch.isclose(loss, torch.tensor(0.25))  # TV: (|0.75-0.5| + 0 + |0-0.25|) / 2
    loss.backward()
    g = logits.grad
    # straight to the logits, +-1/(2N) at every pixel (N = 4): down for the over-drawn class, up for the missing
    assert torch.allclose(g[:, 0], torch.full_like(g[:, 0], 0.125))
    assert torch.allclose(g[:, 2], torch.full_like(g[:, 2], -0.125))
    assert torch.all(g[:, 1] == 0)  # on target: sign(0) = 0

    # one class over its share, two under: the per-pixel gradient is centred over the classes (sums to 0), so
    # it moves the logits apart instead of raising them all (the argmax ignores a common shift)
    logits = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]], [[-1.0, -1.0]]]] * 2, requires_grad=True)
    loss = class_frequency_prior(logits, torch.tensor([0.4, 0.3, 0.3]))
    assert torch.isclose(loss, torch.tensor(0.6))
    loss.backward()
    g = logits.grad
    assert torch.allclose(g.sum(1), torch.zeros(2, 1, 2), atol=1e-7)
    assert (g[:, 0] > 0).all() and (g[:, 1] < 0).all() and (g[:, 2] < 0).all()


def test_class_presence_floor_pushes_only_the_samples_that_drop_a_class():
    from trainer.losses import class_presence_floor

    # sample 0 draws class 1 on one of its two pixels, sample 1 not at all; floor: class 1 at 0.25 per sample
    logits = torch.tensor([[[[5.0, 0.0]], [[0.0, 5.0]], [[-1.0, -1.0]]],
                           [[[5.0, 5.0]], [[0.0, 0.0]], [[-1.0, -1.0]]]], requires_grad=True)
    loss = class_presence_floor(logits, torch.tensor([0.0, 0.25, 0.0]))
    assert torch.isclose(loss, torch.tensor(0.125))   # (0 + 0.25) / 2 samples
    loss.backward()
    g = logits.grad
    assert torch.all(g[0] == 0)   # at or above the floor: no push, however the shares differ from the training's
    # sample 1: class 1 raised at each pixel by 1 / (B * HW) = 1/4, centred over the 3 classes
    assert torch.allclose(g[1, 1], torch.full_like(g[1, 1], -0.25 * 2 / 3))
    assert torch.allclose(g[1].sum(0), torch.zeros(1, 2), atol=1e-7)


def test_the_presence_floor_binds_rare_classes_only():
    import torch.nn.functional as F

    from trainer.losses import presence_floor_shares

    ids = torch.zeros(2, 10, 20, dtype=torch.long)   # two frames of 200 pixels: class 0 the rest
    ids[:, :5] = 1                                    # a region: 25 % of each frame
    ids[0, 9, :4], ids[1, 9, :2] = 2, 2              # an object: 2 % and 1 % of the frames
    masks = F.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    assert torch.allclose(presence_floor_shares(masks, 0.5), torch.tensor([0.0, 0.0, 0.5 * 0.01]))
    assert torch.all(presence_floor_shares(masks, 0.0) == 0)


def test_activation_bounds_are_zero_in_the_healthy_range():
    from trainer.generator import activation_bounds

    torch.manual_seed(0)
    healthy = torch.randn(5, 8, 6, 10) * 0.5  # varies with the sample, well below the ceiling
    assert activation_bounds(healthy, 4.0, 0.3) == 0
    exploded = healthy + 50.0  # a huge constant part: above the ceiling and latent-independent
    assert activation_bounds(exploded, 4.0, 0.0) > 1000
    same = healthy[:1].expand(5, -1, -1, -1)  # every sample alike: only the floor fires
    assert torch.isclose(activation_bounds(same, 4.0, 0.3), torch.tensor(0.09))
    assert activation_bounds(healthy[:1], 4.0, 0.3) == 0  # one sample has no spread: the floor stays off
    x = exploded.clone().requires_grad_()
    activation_bounds(x, 4.0, 0.3).backward()
    assert (x.grad > 0).all()  # pushes every too-large activation down
