"""Parsing the HxW sizes and latent grids users type (`192x320`), for every command."""

from __future__ import annotations

from .errors import UserError

__all__ = ["parse_hw"]


def parse_hw(text: str, *, what: str = "size") -> tuple[int, int]:
    """'192x320' -> (192, 320); a one-line UserError naming `what` (e.g. '--grid') otherwise."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"{what} must look like HxW (e.g. 192x320), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise UserError(f"{what} must be positive, got {text!r}")
    return h, w
