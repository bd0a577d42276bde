"""The one place that opens onnxruntime sessions (torch-free, so the zoo, the runtime and the exporter share it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CPU", "open_session"]

CPU = "CPUExecutionProvider"


def open_session(model: bytes | str | Path, *, providers: tuple[str, ...] = (CPU,), threads: int = 0):
    """An onnxruntime InferenceSession of an ONNX file or its bytes. threads: intra-op threads, 0 = onnxruntime's
    choice (one per core). Warnings stay quiet: users see our one-line errors, not onnxruntime's log."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=list(providers))
