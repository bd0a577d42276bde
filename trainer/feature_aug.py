"""Feature augmentation (FA) of real samples in the discriminator, batched over the whole batch.

Each sample is paired with the next one (i with i+1, cyclically). Every operation fires per sample with
probability p. Ranges follow docs/model.md §2: content mix/drop 10-30 % of channels, rectangles 10-50 %
of the map's sides.

With masks an "object" is all pixels of one class (>= 1) in the low-level feature map. Layout operations keep
a class-id map in step with the features and only ever move whole objects or background pixels, so no object
is ever cut: copy background onto background, swap rectangles that cut no object in either sample, paste a
whole object from the partner (or duplicate one of the sample's own) onto background, remove an object
(filled with the sample's mean background feature).
"""

from __future__ import annotations

import torch

CANDIDATES = 8  # rectangles / shifts tried at once per sample; the first valid one is used


class FeatureAugment:
    def __init__(self, p: float = 0.4, generator: torch.Generator | None = None):
        self.p = p
        self.gen = generator

    # -- helpers -----------------------------------------------------------------------------------------
    def _rand(self, *shape: int, device=None) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen).to(device)

    def _fires(self, batch: int, device) -> torch.Tensor:
        return self._rand(batch, device=device) < self.p

    def _channel_mask(self, batch: int, channels: int, device) -> torch.Tensor:
        """Exactly round(f * C) random channels per sample, f ~ U(0.1, 0.3)."""
        k = (0.1 + 0.2 * self._rand(batch, 1, device=device)) * channels
        rank = self._rand(batch, channels, device=device).argsort(1).argsort(1)
        return rank < k.round()

    def _rectangles(self, batch: int, h: int, w: int, n: int, device) -> torch.Tensor:
        """(B, n, h, w) boolean rectangles with sides of 10-50 % of the map, at random positions."""
        r = self._rand(batch, n, 4, device=device)
        rh = (torch.clamp((0.1 + 0.4 * r[..., 0]) * h, min=1)).round()
        rw = (torch.clamp((0.1 + 0.4 * r[..., 1]) * w, min=1)).round()
        y0 = (r[..., 2] * (h - rh + 1)).floor()
        x0 = (r[..., 3] * (w - rw + 1)).floor()
        ys = torch.arange(h, device=device).view(1, 1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, 1, w)
        return ((ys >= y0[..., None, None]) & (ys < (y0 + rh)[..., None, None])
                & (xs >= x0[..., None, None]) & (xs < (x0 + rw)[..., None, None]))

    # -- content -----------------------------------------------------------------------------------------
    def content(self, vectors: torch.Tensor, batch: int) -> torch.Tensor:
        """vectors: (B, C, 1, 1), or class-major (M*B, C, 1, 1) with masks, where only background is augmented."""
        c = vectors.shape[1]
        groups = vectors.reshape(-1, batch, c)
        x = groups[0]
        dev = x.device
        mix = self._fires(batch, dev)[:, None] & self._channel_mask(batch, c, dev)
        x = torch.where(mix, x.roll(-1, 0), x)
        drop = self._fires(batch, dev)[:, None] & self._channel_mask(batch, c, dev)
        x = torch.where(drop, torch.zeros_like(x), x)
        return torch.cat([x[None], groups[1:]]).reshape(vectors.shape)

    # -- layout ------------------------------------------------------------------------------------------
    def layout(self, feats: torch.Tensor, small_mask: torch.Tensor | None) -> torch.Tensor:
        if small_mask is None:
            return self._swap_rectangle(feats)
        ids = small_mask.argmax(1)
        feats, ids = self._copy_background(feats, ids)
        feats, ids = self._swap_uncut(feats, ids)
        feats, ids = self._paste_object(feats, ids, from_partner=True)
        feats, ids = self._paste_object(feats, ids, from_partner=False)
        feats, ids = self._remove_object(feats, ids)
        return feats

    def _swap_rectangle(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rect = self._rectangles(b, h, w, 1, x.device)[:, 0] & self._fires(b, x.device)[:, None, None]
        return torch.where(rect[:, None], x.roll(-1, 0), x)

    def _copy_background(self, x, ids):
        b, _, h, w = x.shape
        rect = self._rectangles(b, h, w, 1, x.device)[:, 0] & self._fires(b, x.device)[:, None, None]
        sel = rect & (ids == 0) & (ids.roll(-1, 0) == 0)
        return torch.where(sel[:, None], x.roll(-1, 0), x), ids

    def _swap_uncut(self, x, ids):
        """Take a rectangle from the partner, where it cuts no object in either sample."""
        b, _, h, w = x.shape
        rects = self._rectangles(b, h, w, CANDIDATES, x.device)  # (B, K, h, w)
        ok = _cuts_nothing(rects, ids) & _cuts_nothing(rects, ids.roll(-1, 0))
        rect = _first_valid(rects, ok) & self._fires(b, x.device)[:, None, None]
        return torch.where(rect[:, None], x.roll(-1, 0), x), torch.where(rect, ids.roll(-1, 0), ids)

    def _paste_object(self, x, ids, from_partner: bool):
        """Paste one whole object of the source (partner, or the sample itself) onto background, shifted."""
        b, _, h, w = x.shape
        dev = x.device
        src_x, src_ids = (x.roll(-1, 0), ids.roll(-1, 0)) if from_partner else (x, ids)
        obj = _random_object(src_ids, self._rand(b, device=dev))  # (B, h, w)
        ys, xs = obj.any(2), obj.any(1)  # rows / columns the object occupies
        y_lo, y_hi = _extent(ys)
        x_lo, x_hi = _extent(xs)
        r = self._rand(b, CANDIDATES, 2, device=dev)
        dy = (-y_lo[:, None] + r[..., 0] * (h - y_hi + y_lo + 1)[:, None]).floor().long()  # keeps the box inside
        dx = (-x_lo[:, None] + r[..., 1] * (w - x_hi + x_lo + 1)[:, None]).floor().long()
        moved = torch.stack([_shift(obj[:, None].float(), dy[:, k], dx[:, k])[:, 0] > 0.5
                             for k in range(CANDIDATES)], 1)  # (B, K, h, w)
        on_background = ~(moved & (ids[:, None] != 0)).flatten(2).any(2)
        whole = moved.flatten(2).sum(2) == obj.flatten(1).sum(1, keepdim=True)
        ok = on_background & whole & obj.flatten(1).any(1, keepdim=True)
        k = ok.float().argmax(1)
        dst = _first_valid(moved, ok) & self._fires(b, dev)[:, None, None]
        rows = torch.arange(b, device=dev)
        moved_x = _shift(src_x, dy[rows, k], dx[rows, k])
        moved_ids = _shift(src_ids[:, None].float(), dy[rows, k], dx[rows, k])[:, 0].long()
        return torch.where(dst[:, None], moved_x, x), torch.where(dst, moved_ids, ids)

    def _remove_object(self, x, ids):
        b = x.shape[0]
        obj = _random_object(ids, self._rand(b, device=x.device))
        bg = (ids == 0)[:, None].to(x.dtype)
        has_bg = bg.flatten(1).sum(1) > 0
        mean_bg = (x * bg).sum((2, 3), keepdim=True) / bg.sum((2, 3), keepdim=True).clamp(min=1)
        sel = obj & (self._fires(b, x.device) & has_bg)[:, None, None]
        return torch.where(sel[:, None], mean_bg.expand_as(x), x), torch.where(sel, torch.zeros_like(ids), ids)


def _cuts_nothing(rects: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, K): True where every object of `ids` lies wholly inside or wholly outside the rectangle."""
    m = int(ids.max()) + 1
    onehot = torch.nn.functional.one_hot(ids, m)[..., 1:].float()  # objects only, (B, h, w, M-1)
    inside = torch.einsum("bkhw,bhwm->bkm", rects.float(), onehot)
    total = onehot.sum((1, 2))[:, None]
    return ((inside == 0) | (inside == total)).all(2)


def _first_valid(cands: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Pick, per sample, the first candidate map whose flag is set; an empty map where none is."""
    k = ok.float().argmax(1)
    chosen = cands[torch.arange(cands.shape[0], device=cands.device), k]
    return chosen & ok.any(1)[:, None, None]


def _random_object(ids: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, h, w) mask of one class >= 1 drawn uniformly among those present in each sample (empty if none)."""
    m = int(ids.max()) + 1
    present = torch.nn.functional.one_hot(ids, max(m, 2)).flatten(1, 2).any(1)[:, 1:]  # (B, M-1)
    count = present.sum(1)
    pick = (u * count).floor().long().clamp(max=(count - 1).clamp(min=0))
    cls = (present.long().cumsum(1) == (pick + 1)[:, None]) & present
    cls_id = cls.float().argmax(1) + 1
    return (ids == cls_id[:, None, None]) & (count > 0)[:, None, None]


def _extent(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one past the last index of True along dim 1 (0, 0 when empty)."""
    n = occupied.shape[1]
    idx = torch.arange(n, device=occupied.device)
    lo = torch.where(occupied, idx, n).min(1).values
    hi = torch.where(occupied, idx + 1, 0).max(1).values
    return lo.clamp(max=n), torch.maximum(hi, lo.clamp(max=n))


def _shift(t: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-sample integer translation of (B, C, h, w); uncovered pixels become 0."""
    b, c, h, w = t.shape
    iy = torch.arange(h, device=t.device)[None] - dy[:, None]
    ix = torch.arange(w, device=t.device)[None] - dx[:, None]
    valid = ((iy >= 0) & (iy < h))[:, :, None] & ((ix >= 0) & (ix < w))[:, None, :]
    rows = torch.arange(b, device=t.device)[:, None, None]
    out = t.permute(0, 2, 3, 1)[rows, iy.clamp(0, h - 1)[:, :, None], ix.clamp(0, w - 1)[:, None, :]]
    return out.permute(0, 3, 1, 2) * valid[:, None].to(t.dtype)
