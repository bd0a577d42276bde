"""Fast sampling of images and masks from exported scenes (no torch)."""

from zoo import __version__

from .sampler import Sampler  # noqa: E402

__all__ = ["Sampler", "__version__"]
