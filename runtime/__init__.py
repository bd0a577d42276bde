"""Fast sampling of images and masks from exported scenes (no torch)."""

__version__ = "0.1.0"
