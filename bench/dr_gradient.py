"""How large is the diversity-regularisation gradient against the adversarial gradient at G's block outputs?

In bf16 the two are summed at each block output with 8 bits of mantissa, so a DR component below 2^-9 of the
adversarial one is rounded away. Prints, per block, the median ratio and the share of elements below 2^-9
(measured in fp32 on a run's latest checkpoint).

    .venv/bin/python bench/dr_gradient.py RUN_DIR [--trials 4]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainer.augment import augment  # noqa: E402
from trainer.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.discriminator import Discriminator  # noqa: E402
from trainer.generator import Generator  # noqa: E402
from trainer.losses import adversarial, diversity  # noqa: E402
from trainer.train import straight_through  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--trials", type=int, default=4)
    a = ap.parse_args()
    cfg = json.loads((a.run / "config.json").read_text())
    mc, tc = ModelConfig.from_dict(cfg["model"]), cfg["train"]
    G, D, G_ema = Generator(mc), Discriminator(mc), Generator(mc)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    load_checkpoint(list_checkpoints(a.run / "checkpoints")[-1], G, D, G_ema, opt_g, opt_d)
    torch.manual_seed(0)
    stats: dict[int, list] = {}
    for _ in range(a.trials):
        outs = []
        hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o)) for b in G.body]
        out = G(torch.randn(tc["batch_size"], mc.noise_dim), n_rgb=mc.d_lowlevel, features=True)
        for h in hooks:
            h.remove()
        mask = straight_through(out.mask_logits, False) if mc.has_masks else None
        d_out = D(*augment(out.images[::-1], mask, tc["aug_prob"]))
        adv, _ = adversarial(d_out, True, mc.d_blocks, d_out.small_mask)
        g_adv = torch.autograd.grad(adv, outs, retain_graph=True, allow_unused=True)
        g_dr = torch.autograd.grad(tc["lambda_dr"] * diversity(out.features), outs)
        for k, (ga, gd) in enumerate(zip(g_adv, g_dr)):
            if ga is None:
                continue
            ratio = gd.abs().flatten() / ga.abs().flatten().clamp(min=1e-30)
            stats.setdefault(k, []).append((float(ratio.median()), float((ratio < 2 ** -9).float().mean())))
    for k, rows in stats.items():
        med, lost = np.mean(rows, 0)
        print(f"block {k}: median |g_DR| / |g_adv| {med:.3g}; below bf16 resolution (2^-9): {100 * lost:.1f} %")


if __name__ == "__main__":
    main()
