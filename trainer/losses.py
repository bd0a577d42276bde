"""Adversarial losses per discriminator branch, the masked-content-attention classifier loss and the
diversity regularisation (docs/model.md §2-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .discriminator import DOutput

LOWLEVEL_WEIGHT, CONTENT_WEIGHT, LAYOUT_WEIGHT = 1.0, 0.5, 0.5


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float32))


def mca_targets(small_mask: torch.Tensor, fake_class: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and weights of the M*B class-major content vectors.

    small_mask: (B, M, h, w) one-hot at the feature resolution. Real vectors (and the G step) are labelled
    with their class c and weighted 1 / (pixels of class c in the batch); the D's fake step labels every
    vector M ("fake") with weight 1. Vectors of a class absent from their own sample carry no information
    and get weight 0.
    """
    b, m = small_mask.shape[:2]
    pixels = small_mask.detach().float().sum((2, 3))  # (B, M)
    present = (pixels > 0).t().reshape(-1)  # class-major, like the vectors
    if fake_class:
        targets = torch.full((m * b,), m, dtype=torch.long, device=small_mask.device)
        weights = present.float()
    else:
        targets = torch.arange(m, device=small_mask.device).repeat_interleave(b)
        per_class = pixels.sum(0)
        inv = torch.where(per_class > 0, 1.0 / per_class.clamp(min=1), torch.zeros_like(per_class))
        weights = inv.repeat_interleave(b) * present.float()
    return targets, weights


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    per = F.cross_entropy(logits.float(), targets, reduction="none")
    return (per * weights).sum() / weights.sum().clamp(min=1e-12)


def adversarial(out: DOutput, real: bool, n_blocks: int, small_mask: torch.Tensor | None = None,
                fake_class: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of per-block losses, weighted low-level : content : layout = 1 : 0.5 : 0.5, each / n_blocks.

    real=True asks the outputs to look real (D on reals, and the G step); with masks the content branch uses
    the MCA classifier, whose targets are the segments' classes unless fake_class (D on fakes).
    """
    target = 1.0 if real else 0.0
    ll = sum(bce(x, target) for x in out.lowlevel)
    lay = sum(bce(x, target) for x in out.layout)
    if small_mask is None:
        con = sum(bce(x, target) for x in out.content)
    else:
        t, w = mca_targets(small_mask, fake_class)
        con = sum(weighted_ce(x, t, w) for x in out.content)
    total = (LOWLEVEL_WEIGHT * ll + CONTENT_WEIGHT * con + LAYOUT_WEIGHT * lay) / n_blocks
    return total, {"lowlevel": float(ll.detach()), "content": float(con.detach()), "layout": float(lay.detach())}


class PairwiseL1(torch.autograd.Function):
    """sum over pairs i < j of mean |f_i - f_j| (one mean per pair over all other dims).

    Written out because autograd's version of `(f[k:] - f[:-k]).abs().mean()` per offset k keeps a
    materialised copy and a zero-filled full-size gradient per slice: at 192x320 that was ~0.3 s of a
    2.5 s bf16 step. Here the gradient is (upstream / N) * sum_j sign(f_i - f_j), built in place.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        acc = torch.promote_types(f.dtype, torch.float32)  # sums in fp32 (fp64 for fp64 input)
        total = f.new_zeros((), dtype=acc)
        for k in range(1, f.shape[0]):  # pairs (i, i+k) for every offset k, as slices
            total += (f[k:] - f[:-k]).abs_().sum(dtype=acc)
        return total / f[0].numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        signs = torch.zeros_like(f)  # exact in bf16: integers in [-(B-1), B-1]
        for k in range(1, f.shape[0]):
            s = (f[k:] - f[:-k]).sign_()
            signs[k:] += s
            signs[:-k] -= s
        return signs.mul_(grad / f[0].numel())


def diversity(features: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the features of every pair of samples, summed over pairs and levels, times
    2 / (g (g-1)) with g levels (the reference's normalisation). G maximises it (it is subtracted)."""
    g = len(features)
    b = features[0].shape[0]
    if b < 2 or g < 2:
        return features[0].new_zeros((), dtype=torch.float32)
    total = sum(PairwiseL1.apply(f) for f in features)
    return total * 2.0 / (g * (g - 1))


def generator_objective(adversarial_loss: torch.Tensor | float, diversity_term: torch.Tensor, lambda_dr: float) -> torch.Tensor:
    """What G minimises: the adversarial loss minus lambda times the diversity (G maximises diversity)."""
    return adversarial_loss - lambda_dr * diversity_term


def class_frequency_prior(mask_logits: torch.Tensor, training_share: torch.Tensor) -> torch.Tensor:
    """Total variation between the class shares of the fake batch's hard (argmax) masks and the training
    masks' shares, with its gradient passed straight to the logits.

    A class G stops drawing has no pixels, so MCA gives it no loss, and the straight-through softmax gradient
    towards it (p (1 - p)) is ~0 where another class clearly wins: the class never comes back (issue 11,
    docs/robustness/experiments.md). Here every class gets the bounded gradient +-1/(2N) on its logit at every
    pixel (less the mean over the classes), so an under-drawn class is raised where it is closest to winning
    the argmax; MCA then decides what those pixels must look like.
    """
    return 0.5 * (hard_shares(mask_logits, (0, 2, 3)) - training_share).abs().sum()


def hard_shares(mask_logits: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The argmax masks' class shares, averaged over `dims`, with the logits' (centred) gradient passed straight
    through. Centred over the classes, so each pixel's gradient sums to 0: the argmax (and softmax) ignore a shift
    common to all logits, and an uncentred push (more classes under their share than over) raised every logit
    without end (a common level of 17.7 on a 6-class scene at width 0.25, 37 at width 0.5)."""
    logits = mask_logits.float()
    hard = F.one_hot(logits.detach().argmax(1), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    centred = logits - logits.mean(1, keepdim=True)
    return (hard + centred - centred.detach()).mean(dims)


FLOOR_MAX_SHARE = 0.03  # the presence floor applies to classes below this share of the training pixels


def presence_floor_shares(real_masks: torch.Tensor, floor: float) -> torch.Tensor:
    """Per class, the share each fake sample should at least draw: floor x the class's smallest share in any
    training frame (one-hot masks, N x C x H x W), for rare classes only (objects, not regions: a floor on a
    six-class scene's layers made the generator meet it in the mask alone, docs/robustness/experiments.md
    section 12)."""
    rare = real_masks.mean((0, 2, 3)) < FLOOR_MAX_SHARE
    return floor * real_masks.mean((2, 3)).amin(0) * rare


def class_presence_floor(mask_logits: torch.Tensor, floor_share: torch.Tensor) -> torch.Tensor:
    """How far each fake sample's hard class shares fall below floor_share, summed over classes, averaged over
    the batch; gradients passed straight to the logits as in class_frequency_prior.

    The batch prior only matches the batch's shares: a rare class drawn large in one sample and not at all in
    four others satisfies it, and the suite saw 1-5 % classes vanish from half the samples (issue 11). The
    floor is one-sided, so a sample may still draw more of a class, or rearrange the scene freely, as long as
    it draws some of every class the training frames all hold.
    """
    return F.relu(floor_share - hard_shares(mask_logits, (2, 3))).sum(1).mean()


# -- SinGAN (trainer/singan.py) ---------------------------------------------------------------------------------
def wgan_gp_discriminator(D, real: torch.Tensor, fake: torch.Tensor, weight: float) -> tuple[torch.Tensor, dict]:
    """WGAN-GP critic loss: D(fake) - D(real) (mean patch scores) + weight * (|grad| - 1)^2 at random
    interpolates, where grad is the gradient of the summed patch map and |grad| its norm over channels at each
    pixel, averaged over pixels. Each pixel is held to a unit slope: penalising the whole image's gradient of the
    mean score instead lets every patch's slope grow with sqrt(pixels), and at 0.1 weight the critic then
    outgrew the reconstruction term (coins, 90x112: critic gap ~200 after four scales, reconstruction error
    rising within each scale, colours drifting)."""
    d_real, d_fake = D(real).mean(), D(fake).mean()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
    penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
    return d_fake - d_real + weight * penalty, {"D_real": float(d_real.detach()), "D_fake": float(d_fake.detach()),
                                                "GP": float(penalty.detach())}


def reconstruction(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The paper's reconstruction term: squared error of the fixed-noise reconstruction, averaged per pixel."""
    return F.mse_loss(rec, real)
