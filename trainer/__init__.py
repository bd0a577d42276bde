"""Training one-shot image + mask GANs (One-Shot GAN / SIV-GAN with the OSMIS mask branch)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
