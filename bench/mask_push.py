"""Who pushes a class's mask logits, and which way, in the first iterations of a run (issue 11, experiment 17).

Trains a fresh copy of RUN_DIR's setup (its frames, masks, model and train config; nothing is written to RUN_DIR)
for --iters iterations and prints, averaged over every 10 iterations, for one class C:
- its share of the fake batch's argmax masks and its logit margin to the best other class (mean, max);
- the summed centred gradient on its logit from G's adversarial loss (through the straight-through mask into D)
  and from the class-frequency prior (weighted as in training); positive raises the class. The adversarial
  part is the logits' total gradient less the prior's.

    python bench/mask_push.py RUNS/rolling-fp32-0 --class 2 --iters 200
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import click
import torch

import trainer.train as T
from trainer.config import MASK_GRADS, TrainConfig
from trainer.run import Run


def push(grad: torch.Tensor, c: int) -> float:
    """Summed raise of class c's logit relative to the other classes' mean (the argmax sees only differences)."""
    return float(-(grad - grad.mean(1, keepdim=True))[:, c].sum())


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--class", "c", type=int, required=True, help="The class id to follow.")
@click.option("--iters", type=click.IntRange(10), default=200, show_default=True)
@click.option("--lambda-freq", type=float, default=None, help="Override the run's prior weight.")
@click.option("--mask-grad", type=click.Choice(MASK_GRADS), default=None, help="Override the run's.")
def main(run_dir: Path, c: int, iters: int, lambda_freq: float | None, mask_grad: str | None) -> None:
    torch.set_num_threads(1)
    run = Run.open(run_dir)
    images, masks = run.frames()
    changes = {k: v for k, v in (("lambda_freq", lambda_freq), ("mask_grad", mask_grad)) if v is not None}
    tc = TrainConfig(**{**asdict(run.train_config), **changes})
    seen: dict[str, torch.Tensor] = {}
    prior = T.class_frequency_prior

    def traced_prior(logits: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        value = prior(logits, share)
        seen["prior"], = torch.autograd.grad(value, logits, retain_graph=True)
        seen["logits"] = logits.detach()
        logits.register_hook(lambda g: seen.__setitem__("total", g.detach()))
        return value

    T.class_frequency_prior = traced_prior  # this process only: the trainer's step calls it by module name
    with tempfile.TemporaryDirectory() as tmp:
        trainer = T.Trainer(Path(tmp), run.model_config, tc, T.to_float_images(images), masks, None)
        rows = []
        for it in range(1, iters + 1):
            trainer.step()
            logits, g_prior = seen["logits"], seen["prior"] * tc.lambda_freq
            g_adv = seen["total"] - g_prior
            others = torch.cat([logits[:, :c], logits[:, c + 1:]], 1).amax(1)
            margin = logits[:, c] - others
            rows.append([float((logits.argmax(1) == c).float().mean()), float(margin.mean()), float(margin.amax()),
                         push(g_adv, c), push(g_prior, c)])
            if it % 10 == 0:
                share, m_mean, m_max, adv, pri = torch.tensor(rows).mean(0).tolist()
                rows = []
                click.echo(f"{it:5d}  share {share:.4f}  margin mean {m_mean:+.2f} max {m_max:+.2f}  "
                           f"push x1e3: adversarial {adv * 1e3:+8.2f}  prior {pri * 1e3:+8.2f}")


if __name__ == "__main__":
    main()
