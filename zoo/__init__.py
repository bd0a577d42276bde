"""Per-scene model entries and Hugging Face Hub I/O (no torch)."""
