"""Per-scene model entries and Hugging Face Hub I/O (no torch)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
