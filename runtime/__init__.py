"""Fast sampling of images and masks from exported scenes (no torch)."""

__version__ = "0.1.0"

from .sampler import Sampler  # noqa: E402

__all__ = ["Sampler", "__version__"]
