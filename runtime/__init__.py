"""Fast sampling of images and masks from exported scenes (no torch)."""

from zoo import __version__

__all__ = ["Sampler", "__version__"]


def __getattr__(name: str):
    # Sampler (and onnxruntime's bindings behind it) loads on first use: the encoder processes of `runtime sample`
    # import this package for its writers only.
    if name == "Sampler":
        from .sampler import Sampler

        return Sampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
