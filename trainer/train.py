"""The training loop: one G step, one D step (real and fake pass), then the EMA update, per iteration.

A run directory holds config.json, data.safetensors (the training frames and masks at the training
resolution, so a run resumes without its source files), checkpoints/, losses.jsonl and previews/.
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from zoo.errors import UserError
from zoo.files import atomic_write
from zoo.versions import versions

from .augment import augment
from .checkpoint import (atomic_save_tensors, guard_state, is_healthy, list_checkpoints, load_checkpoint,
                         newest_loadable, save_checkpoint)
from .config import MASK_GRADS, ConfigError, ModelConfig, TrainConfig
from .discriminator import Discriminator
from .feature_aug import FeatureAugment
from .generator import SN_VECTORS, Generator, refresh_spectral_norms
from .health import GuardState, Probe
from .losses import (adversarial, class_frequency_prior, class_presence_floor, diversity, generator_objective,
                     presence_floor_shares)
from .perf import keep_freed_memory
from .preview import preview_grid
from .run import CONFIG_FORMAT

class CollapseError(UserError):
    """Training collapsed and no rollback is left."""




def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available to torch")
    return torch.device(name)


RARE = 0.03  # "protect" spares object classes: under this share of the training pixels (a region class is not)


class _ProtectedGrad(torch.autograd.Function):
    """Identity on the hard mask forward; backward, the softmax's gradient written as its pairwise terms,
    p_j p_k (g_j - g_k) on class j against class k, with one change: a rare class (under RARE of the training
    pixels) is not pushed down at pixels it does not hold in a sample that draws less of it than its training
    share. There the softmax lowers it wherever D wants another class to win more surely; summed over the frame
    that drains a small class which has lost its pixels, and it never comes back (experiment 17). Everywhere else
    the gradient is the softmax's, so the masks keep the edges that D's widening push gives them (experiment 18).
    Sparing only below a quarter of the share held the class at that quarter (experiment 18)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        win = F.one_hot(soft.argmax(1), soft.shape[1]).permute(0, 3, 1, 2).bool()
        share = share.view(1, -1, 1, 1)
        short = (win.float().mean((2, 3), keepdim=True) < share) & (share < RARE)
        ctx.save_for_backward(soft, short & ~win)
        ctx.dtype = logits.dtype
        return hard

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        soft, spared = ctx.saved_tensors
        grad = grad.float()
        pair = (soft.unsqueeze(2) * soft.unsqueeze(1)) * (grad.unsqueeze(2) - grad.unsqueeze(1))  # [b, j, k, h, w]
        drop = spared.unsqueeze(2) & (pair > 0)  # j spared and pushed down against k
        keep = ~(drop | drop.transpose(1, 2))  # ...and k's matching raise, so every pixel still sums to 0
        return (pair * keep).sum(2).to(ctx.dtype), None, None, None


def straight_through(logits: torch.Tensor, bernoulli: bool, grad: str = "softmax",
                     share: torch.Tensor | None = None) -> torch.Tensor:
    """Hard mask in the forward pass, gradients of the softmax in the backward pass.

    With the full softmax, D's wish that a pixel's winner win more surely lowers every other class there, so a
    rare class that lost its pixels early is pushed further down everywhere (docs/robustness/experiments.md
    section 17). grad="protect" (the trainer's default; needs the training masks' class `share`): a rare class a
    sample draws too little of is not pushed down there (`_ProtectedGrad`); on a scene without a rare class it is
    the softmax, bit for bit."""
    if grad not in MASK_GRADS:  # a library caller's typo must not train silently with another estimator
        raise ValueError(f"straight_through: grad must be one of {', '.join(MASK_GRADS)}, not {grad!r}")
    soft = torch.softmax(logits.float(), dim=1)
    if bernoulli:
        hard = torch.bernoulli(soft.detach().clamp(0.001, 0.999))
    else:
        hard = F.one_hot(soft.detach().argmax(1), soft.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)
    if grad == "protect":
        if share is None:
            raise ValueError("straight_through: grad='protect' needs the training masks' class share")
        if bool((share < RARE).any()):  # the trainer passes a host copy: no GPU sync here in every step
            return _ProtectedGrad.apply(logits, hard, soft.detach(),
                                        share.to(logits.device, torch.float32, non_blocking=True))
        # no rare class, nothing to spare: the softmax's own backward keeps training bit-identical to "softmax"
    return hard - soft.detach() + soft


def image_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Fine to coarse, bilinear x0.5 per level."""
    out = [images]
    for _ in range(levels - 1):
        out.append(F.interpolate(out[-1], scale_factor=0.5, mode="bilinear", align_corners=False))
    return out


class Trainer:
    def __init__(self, run_dir: Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 images: np.ndarray, masks: np.ndarray | None, palette: list[list[int]] | None = None):
        self.run_dir = Path(run_dir)
        self.mc, self.tc = model_cfg, train_cfg
        self.device = pick_device(train_cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.palette = palette
        torch.manual_seed(train_cfg.seed)
        self.G = Generator(model_cfg).to(self.device, memory_format=torch.channels_last)
        self.D = Discriminator(model_cfg).to(self.device, memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (train_cfg.beta1, train_cfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=train_cfg.lr_g, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=train_cfg.lr_d, betas=betas)
        self.fa = FeatureAugment(train_cfg.fa_prob)
        real = torch.from_numpy(images).to(self.device).contiguous(memory_format=torch.channels_last)
        self.real_pyramid = image_pyramid(real, model_cfg.d_lowlevel)
        self.real_masks = None
        if masks is not None:
            ids = torch.from_numpy(masks.astype(np.int64)).to(self.device)
            self.real_masks = F.one_hot(ids, model_cfg.num_classes).permute(0, 3, 1, 2).float()
            self.class_share = self.real_masks.mean((0, 2, 3))
            self.class_share_host = self.class_share.cpu()  # straight_through's per-step rare-class test
            self.class_floor = presence_floor_shares(self.real_masks, train_cfg.presence_floor)
        u8 = np.clip(np.round((images.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
        self.probe = Probe(u8, masks, model_cfg.num_classes, model_cfg.noise_dim, train_cfg.seed)
        self.guard = GuardState()
        self.iteration = 0
        self.stop_requested = False
        preview_gen = torch.Generator().manual_seed(train_cfg.seed + 1)
        self.preview_z = torch.randn(8, model_cfg.noise_dim, generator=preview_gen).to(self.device)

    # -- one iteration ------------------------------------------------------------------------------------
    def autocast(self):
        if self.tc.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> dict[str, float]:
        tc, mc = self.tc, self.mc
        n_ll, n_blocks = mc.d_lowlevel, mc.d_blocks
        z = torch.randn(tc.batch_size, mc.noise_dim, device=self.device)

        # G step (D's weights frozen: their gradients are not needed here)
        self.D.requires_grad_(False)
        with self.autocast():
            bounds = (tc.ceiling, tc.floor) if tc.ceiling > 0 or tc.floor > 0 else None
            out = self.G(z, n_rgb=n_ll, features=tc.lambda_dr > 0, bounds=bounds)
            fake_pyr = out.images[::-1]
            fake_mask = None
            if mc.has_masks:
                fake_mask = straight_through(out.mask_logits, self.iteration < tc.bernoulli_warmup, tc.mask_grad,
                                             self.class_share_host)
            d_out = self.D(*augment(fake_pyr, fake_mask, tc.aug_prob), mask_resize=tc.mask_resize)
            loss_adv, _ = adversarial(d_out, True, n_blocks, d_out.small_mask)
            zero = torch.zeros((), device=self.device)
            freq = zero
            if mc.has_masks:
                freq = class_frequency_prior(out.mask_logits, self.class_share)
                if tc.presence_floor > 0:
                    freq = freq + class_presence_floor(out.mask_logits, self.class_floor)
            penalty = out.bounds if out.bounds is not None else zero
            loss_g = loss_adv + tc.lambda_freq * freq + penalty
            dr = diversity(out.features) if tc.lambda_dr > 0 else zero
        self.opt_G.zero_grad(set_to_none=True)
        if tc.precision == "bf16" and tc.lambda_dr > 0:
            # The diversity term gets its own backward pass: summed with the adversarial gradient in one bf16
            # activation gradient, its share (median 3 % at full resolution) was rounded coarsely or away, and
            # bf16 runs came out less diverse. Apart, each is exact to bf16 relative to itself; they add up in
            # the fp32 weight gradients. Costs one more G backward (bench/bf16_quality.py, README).
            loss_g.backward(retain_graph=True)
            generator_objective(0.0, dr, tc.lambda_dr).backward()
        else:
            generator_objective(loss_g, dr, tc.lambda_dr).backward()
        self.opt_G.step()
        self.D.requires_grad_(True)

        # D step: reals (with feature augmentation), then this iteration's fakes, detached
        idx = torch.randint(0, self.real_pyramid[0].shape[0], (tc.batch_size,), device=self.device)
        real_pyr = [lvl[idx] for lvl in self.real_pyramid]
        real_mask = self.real_masks[idx] if self.real_masks is not None else None
        with self.autocast():
            d_real = self.D(*augment(real_pyr, real_mask, tc.aug_prob), augment=self.fa, mask_resize=tc.mask_resize)
            loss_real, s_real = adversarial(d_real, True, n_blocks, d_real.small_mask)
            fake_pyr = [x.detach() for x in fake_pyr]
            fake_mask = fake_mask.detach() if fake_mask is not None else None
            d_fake = self.D(*augment(fake_pyr, fake_mask, tc.aug_prob), mask_resize=tc.mask_resize)
            loss_fake, s_fake = adversarial(d_fake, False, n_blocks, d_fake.small_mask, fake_class=True)
            loss_d = loss_real + loss_fake
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        self.update_ema()
        self.iteration += 1
        self.guard.observe(float(loss_fake.detach()))
        scalars = {"G": loss_adv, "DR": dr, "freq": freq, "bounds": penalty, "D_real": loss_real, "D_fake": loss_fake}
        return {**{k: float(v.detach()) for k, v in scalars.items()},
                **{f"real_{k}": v for k, v in s_real.items()}, **{f"fake_{k}": v for k, v in s_fake.items()}}

    @torch.no_grad()
    def update_ema(self) -> None:
        """Average weights and biases; the EMA's spectral-norm vectors are recomputed when it is used."""
        ema_sd, cur_sd = self.G_ema.state_dict(), self.G.state_dict()
        names = [k for k, v in cur_sd.items() if v.is_floating_point() and not k.endswith(SN_VECTORS)]
        torch._foreach_lerp_([ema_sd[k] for k in names], [cur_sd[k] for k in names], 1.0 - self.tc.ema_decay)

    # -- persistence --------------------------------------------------------------------------------------
    def save(self) -> Path:
        refresh_spectral_norms(self.G_ema)
        return save_checkpoint(self.run_dir / "checkpoints", self.iteration, self.G, self.D, self.G_ema,
                               self.opt_G, self.opt_D, self.tc.keep, guard=self.guard.to_dict())

    def restore(self, path: Path) -> int:
        self.iteration = load_checkpoint(path, self.G, self.D, self.G_ema, self.opt_G, self.opt_D)
        state = guard_state(path)
        self.guard = GuardState.from_dict(state) if state else GuardState()
        return self.iteration

    def restore_latest(self) -> int:
        ckpts = list_checkpoints(self.run_dir / "checkpoints")
        return newest_loadable(ckpts, self.restore)[0] if ckpts else self.iteration

    def health_text(self) -> str:
        g = self.guard
        if g.last is None:
            return "-"
        text = "ok" if g.healthy else f"{'; '.join(g.last['problems'])} ({g.streak}/{self.probe.limits.patience})"
        return text + (f", {g.rollbacks} rollback(s)" if g.rollbacks else "")

    # -- the collapse guard ------------------------------------------------------------------------------
    def check_health(self) -> dict:
        """A check of the raw G (trainer/health.py); class rules start once masks are hard for a while."""
        settled = self.iteration >= self.tc.bernoulli_warmup + 2 * self.tc.check_every
        return self.guard.check(self.probe, self.G, self.iteration, settled)

    def roll_back(self) -> None:
        """After a collapse: back to the newest healthy checkpoint from before it started, then continue with
        half the learning rates (again halved per rollback) and a new data-order seed. Checkpoints of the
        abandoned stretch move to checkpoints/collapsed-<n>/; when no rollback is left, CollapseError."""
        last, onset, n = self.guard.last, self.guard.onset, self.guard.rollbacks + 1
        at = self.iteration
        if n > self.tc.max_rollbacks:
            self._log_event({"iter": at, "event": "collapse", "onset": onset, "problems": last["problems"]})
            self.save()
            raise CollapseError(
                f"{self.run_dir}: training collapsed at iteration {at} ({'; '.join(last['problems'])})"
                + (f" after {n - 1} rollback(s)" if n > 1 else "")
                + "; the health checks are in losses.jsonl (try another --seed; --no-guard only reports collapses)")
        ckpt_dir = self.run_dir / "checkpoints"
        ckpts = list_checkpoints(ckpt_dir)
        target = next(p for p in reversed(ckpts) if int(p.name[5:14]) < onset and is_healthy(p))
        aside = ckpt_dir / f"collapsed-{n}"
        aside.mkdir(exist_ok=True)
        for p in ckpts:
            if p.name > target.name:
                p.rename(aside / p.name)
        self.restore(target)
        self.guard.rollbacks = n
        for opt, lr in ((self.opt_G, self.tc.lr_g), (self.opt_D, self.tc.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 ** n
        seed = int(np.random.SeedSequence([self.tc.seed, n]).generate_state(1)[0]) % 2 ** 63
        torch.manual_seed(seed)
        self._trim_log()
        self._log_event({"iter": self.iteration, "event": "rollback", "collapsed_at": at, "onset": onset,
                         "problems": last["problems"], "rollback": n, "lr_g": self.tc.lr_g * 0.5 ** n,
                         "lr_d": self.tc.lr_d * 0.5 ** n, "data_seed": seed})
        self.save()  # the restored state with its new seed and rates: a resume continues from here

    @torch.no_grad()
    def write_preview(self) -> None:
        refresh_spectral_norms(self.G_ema)
        out = self.G_ema(self.preview_z)
        images = ((out.images[-1].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        masks = out.mask_logits.argmax(1).byte().cpu().numpy() if out.mask_logits is not None else None
        png = preview_grid(images, masks, self.palette)
        folder = self.run_dir / "previews"
        folder.mkdir(exist_ok=True)
        atomic_write(folder / f"preview-{self.iteration:09d}.png", png)
        atomic_write(self.run_dir / "preview.png", png)

    def _log_event(self, event: dict) -> None:
        with open(self.run_dir / "losses.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def _log(self, stats: dict, elapsed: float) -> None:
        self._log_event({"iter": self.iteration, "time": round(elapsed, 4),
                         **{k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()}})

    def _trim_log(self) -> None:
        trim_log(self.run_dir, self.iteration)

    # -- the loop -----------------------------------------------------------------------------------------
    def fit(self, quiet: bool = False, on_step: Callable[["Trainer"], None] | None = None) -> bool:
        """Train until tc.iters. Returns False when stopped by Ctrl-C (after saving a checkpoint)."""
        self._trim_log()
        tc = self.tc
        with ctrl_c_stops(self), tqdm(total=tc.iters, initial=self.iteration, file=sys.stderr, disable=quiet,
                                      unit="it", dynamic_ncols=True, desc="train") as bar:
            if not list_checkpoints(self.run_dir / "checkpoints"):
                self.save()  # the initial state: the rollback target of a collapse before the first save
            while self.iteration < tc.iters and not self.stop_requested:
                t0 = time.perf_counter()
                stats = self.step()
                checked = self.iteration % tc.check_every == 0
                if checked:
                    stats["health"] = self.check_health()
                if checked or self.iteration % tc.log_every == 0 or self.iteration == tc.iters:
                    self._log(stats, time.perf_counter() - t0)
                if tc.guard and self.guard.streak >= self.probe.limits.patience:
                    self.roll_back()
                    bar.n = self.iteration
                    continue
                if self.iteration % tc.save_every == 0 or self.iteration == tc.iters:
                    self.save()
                if self.iteration % tc.preview_every == 0 or self.iteration == tc.iters:
                    self.write_preview()
                bar.update(1)
                bar.set_postfix(G=f"{stats['G']:.3f}", D=f"{stats['D_real'] + stats['D_fake']:.3f}",
                                DR=f"{stats['DR']:.3f}", health=self.health_text(), refresh=False)
                if on_step is not None:
                    on_step(self)
            if self.stop_requested:
                self.save()
                return False
            return True


# -- run directories ----------------------------------------------------------------------------------------
def write_run(run_dir: Path, *, model_cfg: ModelConfig, train_cfg: TrainConfig, data_info: dict,
              images_u8: np.ndarray, masks: np.ndarray | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"images": torch.from_numpy(np.ascontiguousarray(images_u8))}
    if masks is not None:
        tensors["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
    atomic_save_tensors(run_dir / "data.safetensors", tensors, {"format": "oneshot-gan-data/1"})
    config = {"format": CONFIG_FORMAT, "model": model_cfg.to_dict(), "train": asdict(train_cfg),
              "data": data_info, "versions": versions("torch", python=True)}
    atomic_write(run_dir / "config.json", json.dumps(config, indent=2) + "\n")


@contextlib.contextmanager
def ctrl_c_stops(trainer):
    """While training: the first Ctrl-C sets trainer.stop_requested (the loop saves and stops after its step),
    a second one aborts at once."""
    previous = signal.getsignal(signal.SIGINT)

    def request_stop(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def trim_log(run_dir: Path, iteration: int) -> None:
    """Drop loss lines written after the checkpoint we resume from (a crash between saves, or a rollback)."""
    path = run_dir / "losses.jsonl"
    if not path.exists():
        return
    keep = [ln for ln in path.read_text(errors="replace").splitlines()
            if (rec := _record(ln)) is not None and rec.get("iter", 0) <= iteration]
    atomic_write(path, "".join(ln + "\n" for ln in keep))


def _record(line: str) -> dict | None:
    """One losses.jsonl line; None for a blank or torn one (the process died while appending it)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def to_float_images(images_u8: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return images_u8.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
