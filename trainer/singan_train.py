"""Training a SinGAN pyramid (trainer/singan.py), coarse to fine, each scale frozen once trained.

Per scale, the paper's recipe (its supplementary material): `iters` iterations of three critic steps and three
generator steps on the whole image (batch 1), Adam (lr, betas 0.5 / 0.999) with the learning rate cut by 10 after
80 % of the scale, WGAN-GP (weight 0.1) plus alpha = 10 times the reconstruction loss; scale n starts from scale
n-1's weights where the widths match; its noise amplitude is 0.1 x the RMSE between the real image and the
upsampled reconstruction of the scales below. The reconstruction noise is one fixed map at the coarsest scale
and zeros above it.

Checkpoints (checkpoints/ckpt-<iteration>.safetensors, counting the steps of all scales so far) hold every generator,
the noise amplitudes, the current critic, both optimizers, the reconstruction noise and the RNG states: a run
resumes exactly, also in the middle of a scale.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from zoo.files import atomic_write

from .checkpoint import (_optimizer_state, _optimizer_tensors, _prefixed, _rotate, _strip, atomic_save_tensors,
                         list_checkpoints, newest_loadable, read_metadata, rng_states, set_rng_states)
from .config import TrainConfig
from .losses import reconstruction, wgan_gp_discriminator
from .preview import preview_grid
from .singan import ScaleDiscriminator, SinGAN, SinGANConfig, real_pyramid, resize, to_channels, uint8_outputs

CHECKPOINT_FORMAT = "oneshot-gan-singan-checkpoint/1"
D_STEPS = G_STEPS = 3
ALPHA = 10.0        # reconstruction weight
GP_WEIGHT = 0.1
AMP_PER_RMSE = 0.1
LR_DROP_AT = 0.8    # of a scale's iterations


class SinGANTrainer:
    def __init__(self, run_dir: Path, cfg: SinGANConfig, tc: TrainConfig, images: np.ndarray,
                 masks: np.ndarray | None, palette: list[list[int]] | None = None):
        from .train import pick_device

        self.run_dir, self.cfg, self.tc, self.palette = Path(run_dir), cfg, tc, palette
        self.device = pick_device(tc.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(tc.seed)
        real = to_channels(torch.from_numpy(images[:1]), None if masks is None else torch.from_numpy(masks[:1]),
                           cfg.num_classes)
        self.reals = [r.to(self.device) for r in real_pyramid(real, cfg.sizes, cfg.num_classes)]
        self.model = SinGAN(cfg).to(self.device)
        fixed = torch.Generator().manual_seed(tc.seed + 1)
        self.z_rec = torch.randn(1, cfg.channels, *cfg.sizes[0], generator=fixed).to(self.device)
        self.preview_noise = [z.to(self.device) for z in self.model.noise(4, fixed)]
        self.scale, self.step_in_scale, self.done_before = -1, 0, 0   # done_before: steps of the finished scales
        self.D = None
        self.stop_requested = False
        self.begin_scale(0)

    # -- scales ----------------------------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        return self.done_before + self.step_in_scale

    @property
    def finished(self) -> bool:
        return self.scale == len(self.cfg.sizes) - 1 and self.step_in_scale >= self.tc.iters

    def rec_noise(self, upto: int) -> list[torch.Tensor]:
        return [self.z_rec] + [torch.zeros(1, self.cfg.channels, *s, device=self.device)
                               for s in self.cfg.sizes[1:upto + 1]]

    @torch.no_grad()
    def coarser(self, noises: list[torch.Tensor] | None) -> torch.Tensor:
        """The frozen scales' output, upsampled to the current scale (zeros at scale 0); noises=None: random."""
        n, size = self.scale, self.cfg.sizes[self.scale]
        if n == 0:
            return torch.zeros(1, self.cfg.channels, *size, device=self.device)
        noises = self.model.noise(1, sizes=self.cfg.sizes[:n]) if noises is None else noises
        return resize(self.model(noises, upto=n - 1), size)

    def begin_scale(self, n: int, *, restoring: bool = False) -> None:
        """Freeze the scales below n; a new critic and optimizers for scale n, started from scale n-1's weights
        where the widths match; scale n's noise amplitude from the reconstruction RMSE."""
        kernels = self.cfg.kernels()
        for frozen in self.model.gens[:n]:
            frozen.eval().requires_grad_(False)
        D = ScaleDiscriminator(self.cfg.channels, kernels[n]).to(self.device)
        if n > 0 and kernels[n] == kernels[n - 1] and not restoring:
            self.model.gens[n].load_state_dict(self.model.gens[n - 1].state_dict())
            D.load_state_dict(self.D.state_dict())
        if n > 0 and not restoring:
            self.done_before += self.step_in_scale
        self.D, self.scale, self.step_in_scale = D, n, 0
        G = self.model.gens[n].train().requires_grad_(True)
        self.opt_G = torch.optim.Adam(G.parameters(), lr=self.tc.lr_g, betas=(self.tc.beta1, self.tc.beta2))
        self.opt_D = torch.optim.Adam(D.parameters(), lr=self.tc.lr_d, betas=(self.tc.beta1, self.tc.beta2))
        self.rec_prev = self.coarser(self.rec_noise(n - 1)) if n > 0 else self.coarser(None)
        if n > 0 and not restoring:
            rmse = torch.sqrt(torch.mean((self.rec_prev - self.reals[n]) ** 2))
            self.model.noise_amp[n] = AMP_PER_RMSE * rmse

    # -- one iteration -----------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        n, G, D, real = self.scale, self.model.gens[self.scale], self.D, self.reals[self.scale]
        drop = self.step_in_scale >= LR_DROP_AT * self.tc.iters
        for opt, lr in ((self.opt_G, self.tc.lr_g), (self.opt_D, self.tc.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * (0.1 if drop else 1.0)
        prev = self.coarser(None)
        z = self.model.noise_amp[n] * torch.randn_like(real)
        z_rec = self.model.noise_amp[n] * (self.z_rec if n == 0 else torch.zeros_like(real))
        for _ in range(D_STEPS):
            with torch.no_grad():
                fake = G(z, prev)
            loss_d, stats = wgan_gp_discriminator(D, real, fake, GP_WEIGHT)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
        D.requires_grad_(False)
        for _ in range(G_STEPS):
            adv = -D(G(z, prev)).mean()
            rec = reconstruction(G(z_rec, self.rec_prev), real)
            self.opt_G.zero_grad(set_to_none=True)
            (adv + ALPHA * rec).backward()
            self.opt_G.step()
        D.requires_grad_(True)
        self.step_in_scale += 1
        return {**stats, "G": float(adv.detach()), "rec": float(rec.detach())}

    # -- persistence -------------------------------------------------------------------------------------
    def save(self) -> Path:
        ckpt_dir = self.run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tensors = {**_prefixed("G", self.model.state_dict()), **_prefixed("D", self.D.state_dict()),
                   "z_rec": self.z_rec, **rng_states()}
        t_g, meta_g = _optimizer_tensors(self.opt_G, "opt_G")
        t_d, meta_d = _optimizer_tensors(self.opt_D, "opt_D")
        meta = {"format": CHECKPOINT_FORMAT, "iteration": str(self.iteration), "scale": str(self.scale),
                "step": str(self.step_in_scale), "done_before": str(self.done_before),
                "opt_G": json.dumps(meta_g), "opt_D": json.dumps(meta_d)}
        path = ckpt_dir / f"ckpt-{self.iteration:09d}.safetensors"
        atomic_save_tensors(path, {**tensors, **t_g, **t_d}, meta)
        _rotate(ckpt_dir, self.tc.keep)
        return path

    def restore(self, path: Path) -> int:
        tensors, meta = load_file(str(path)), read_metadata(path)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a SinGAN checkpoint ({meta.get('format')})")
        self.begin_scale(int(meta["scale"]), restoring=True)   # the modules and optimizers; states follow
        self.model.load_state_dict(_strip("G", tensors), strict=True)
        self.D.load_state_dict(_strip("D", tensors), strict=True)
        self.opt_G.load_state_dict(_optimizer_state(tensors, "opt_G", json.loads(meta["opt_G"])))
        self.opt_D.load_state_dict(_optimizer_state(tensors, "opt_D", json.loads(meta["opt_D"])))
        self.z_rec = tensors["z_rec"].to(self.device)
        if self.scale > 0:
            self.rec_prev = self.coarser(self.rec_noise(self.scale - 1))
        self.step_in_scale, self.done_before = int(meta["step"]), int(meta["done_before"])
        set_rng_states(tensors)
        return self.iteration

    def restore_latest(self) -> int:
        ckpts = list_checkpoints(self.run_dir / "checkpoints")
        return newest_loadable(ckpts, self.restore)[0] if ckpts else self.iteration

    # -- previews and logs -------------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, upto: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Four samples of the scales trained so far, as (N, H, W, 3) uint8 and (N, H, W) class ids."""
        was = self.model.gens[upto].training
        self.model.gens[upto].eval()
        x = self.model(self.preview_noise, upto=upto)
        self.model.gens[upto].train(was)
        images, masks = uint8_outputs(x, self.cfg.num_classes)
        return images.cpu().numpy(), None if masks is None else masks.cpu().numpy()

    def write_preview(self) -> None:
        images, masks = self.samples(self.scale)
        data = preview_grid(images, masks, self.palette)
        (self.run_dir / "previews").mkdir(exist_ok=True)
        atomic_write(self.run_dir / "previews" / f"scale-{self.scale:02d}.png", data)
        atomic_write(self.run_dir / "preview.png", data)

    def _log(self, stats: dict, elapsed: float) -> None:
        rec = {"iter": self.iteration, "scale": self.scale, "time": round(elapsed, 4),
               **{k: round(v, 6) for k, v in stats.items()}}
        with open(self.run_dir / "losses.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, quiet: bool = False) -> bool:
        """Train to the end (True) or until Ctrl-C (False, after a checkpoint)."""
        from .train import ctrl_c_stops, trim_log

        trim_log(self.run_dir, self.iteration)
        tc, last = self.tc, len(self.cfg.sizes) - 1
        total = self.done_before + (last + 1 - self.scale) * tc.iters
        with ctrl_c_stops(self), tqdm(total=total, initial=self.iteration, disable=quiet, file=sys.stderr,
                                      dynamic_ncols=True, desc="singan") as bar:
            while not self.finished and not self.stop_requested:
                if self.step_in_scale >= tc.iters:
                    self.begin_scale(self.scale + 1)
                t0 = time.perf_counter()
                stats = self.step()
                end_of_scale = self.step_in_scale == tc.iters
                if self.iteration % tc.log_every == 0 or end_of_scale:
                    self._log(stats, time.perf_counter() - t0)
                if self.iteration % tc.save_every == 0 or end_of_scale:
                    self.save()
                if end_of_scale:
                    self.write_preview()
                bar.update(1)
                bar.set_postfix(scale=f"{self.scale + 1}/{last + 1}", D=f"{stats['D_fake'] - stats['D_real']:.3f}",
                                rec=f"{stats['rec']:.4f}", refresh=False)
            if self.stop_requested and not self.finished:
                self.save()
                return False
            return True

