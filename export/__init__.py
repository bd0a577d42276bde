"""Turning trained generators into ONNX and TensorRT artifacts (needs the `export` extra).

    from export import export_entry, import_reference
    export_entry("runs/balloons", "entries/balloons", precisions=("fp32", "int8"))
"""

__all__ = ["export_entry", "import_reference"]


def export_entry(*args, **kwargs):
    """See export.writer.export_entry (imported lazily: torch and onnx load only when used)."""
    from .writer import export_entry as impl

    return impl(*args, **kwargs)


def import_reference(*args, **kwargs):
    """See export.reference.import_reference."""
    from .reference import import_reference as impl

    return impl(*args, **kwargs)
