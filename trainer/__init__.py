"""Training one-shot image + mask GANs (One-Shot GAN / SIV-GAN with the OSMIS mask branch)."""

from zoo import __version__

__all__ = ["__version__"]
