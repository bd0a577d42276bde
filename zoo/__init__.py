"""Per-scene model entries and Hugging Face Hub I/O (no torch)."""

__version__ = "0.1.0"
