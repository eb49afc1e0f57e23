"""The drawing behind DiffIER Label Grid: row and column labels around a grid of equally sized tiles.

The guidance-sweep workflow stitches its tiles with ComfyUI's ``ImageStitch`` (tiles of one size, separated by a
fixed spacing); this module adds a header band with one label centred over each column and a left margin with one
label per row, so the saved grid says which sampler and which CFG weight each tile is. Pure torch + Pillow (which
every ComfyUI install has); images are ComfyUI-layout tensors ``(batch, height, width, channels)`` in ``[0, 1]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..diffier_core import DiffIERParameterError

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont, ImageFont

__all__ = ["GridLayout", "grid_layout", "label_grid", "parse_labels"]

PADDING_FRACTION = 0.4   # padding around a label, as a fraction of the font size
MIN_AUTO_FONT = 10
MAX_FONT = 256


def parse_labels(text: str) -> list[str]:
    """One label per non-empty line (surrounding spaces removed)."""
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def _font(size: int) -> FreeTypeFont | ImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_width(font: FreeTypeFont | ImageFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Where the tiles and the bands are, in pixels of the labelled image."""

    tile_width: int
    tile_height: int
    spacing: int
    font_size: int
    header_height: int      # 0 when there are no column labels
    margin_width: int       # 0 when there are no row labels
    width: int              # of the labelled image
    height: int

    def column_centre(self, col: int) -> float:
        return self.margin_width + col * (self.tile_width + self.spacing) + self.tile_width / 2

    def row_centre(self, row: int) -> float:
        return self.header_height + row * (self.tile_height + self.spacing) + self.tile_height / 2


def _tile_size(extent: int, count: int, spacing: int, axis: str, labels_name: str) -> int:
    tiles = extent - (count - 1) * spacing
    if count < 1 or tiles < count or tiles % count:
        raise DiffIERParameterError(
            labels_name, count,
            f"a label count that splits the image {axis} ({extent} px) into equal tiles separated by "
            f"spacing={spacing} px (tile {axis} = ({extent} - (count - 1) * spacing) / count, a whole number)")
    return tiles // count


def grid_layout(width: int, height: int, columns: Sequence[str], rows: Sequence[str], spacing: int,
                font_size: int = 0) -> GridLayout:
    """Geometry of the labelled grid for an input grid of ``width × height`` pixels.

    Args:
        width, height: size of the stitched grid (all tiles plus the spacing between them).
        columns: one label per column (empty: no header band, one column assumed).
        rows: one label per row (empty: no left margin, one row assumed).
        spacing: pixels between neighbouring tiles (``ImageStitch``'s ``spacing_width``), ``>= 0``.
        font_size: label height in pixels, ``0`` = automatic (tile width / 14, at least 10), at most 256.
    """
    if not isinstance(spacing, int) or spacing < 0:
        raise DiffIERParameterError("spacing", spacing, "an integer >= 0 (ImageStitch's spacing_width)")
    if not isinstance(font_size, int) or not 0 <= font_size <= MAX_FONT:
        raise DiffIERParameterError("font_size", font_size, f"an integer in [0, {MAX_FONT}] (0 = automatic)")
    tile_w = _tile_size(width, max(1, len(columns)), spacing, "width", "columns")
    tile_h = _tile_size(height, max(1, len(rows)), spacing, "height", "rows")
    size = font_size or max(MIN_AUTO_FONT, round(tile_w / 14))
    pad = max(2, round(size * PADDING_FRACTION))
    header = size + 2 * pad if columns else 0
    margin = 0
    if rows:
        font = _font(size)
        margin = max(_text_width(font, r) for r in rows) + 2 * pad
    return GridLayout(tile_w, tile_h, spacing, size, header, margin, width + margin, height + header)


def _draw_mask(layout: GridLayout, columns: Sequence[str], rows: Sequence[str]) -> torch.Tensor:
    """A ``(height, width)`` float mask of the labels' ink (1 = text) for the whole labelled canvas."""
    import numpy as np
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (layout.width, layout.height), 0)
    draw = ImageDraw.Draw(canvas)
    font = _font(layout.font_size)

    def centred(cx: float, cy: float, text: str) -> None:
        # centre the ink box by hand: bitmap fonts (Pillow without FreeType) support no other anchor than "la"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((round(cx - (right - left) / 2 - left), round(cy - (bottom - top) / 2 - top)), text, fill=255,
                  font=font)

    for col, text in enumerate(columns):
        centred(layout.column_centre(col), layout.header_height / 2, text)
    for row, text in enumerate(rows):
        centred(layout.margin_width / 2, layout.row_centre(row), text)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)


def label_grid(images: torch.Tensor, columns: Sequence[str], rows: Sequence[str], spacing: int,
               font_size: int = 0) -> torch.Tensor:
    """Add a header band (column labels) and a left margin (row labels) to every grid in the batch.

    The grid itself is copied unchanged into the lower-right part of the result; the bands are white with black
    text (alpha, if present, is opaque). Labels wider than their column are drawn centred and may overlap the
    neighbouring label: use shorter labels or a smaller ``font_size``.

    Args:
        images: ``(batch, height, width, channels)`` grids in ``[0, 1]``, as ComfyUI's IMAGE type.
        columns, rows, spacing, font_size: see :func:`grid_layout`.

    Returns:
        ``(batch, height + header, width + margin, channels)`` tensor of the input's dtype and device.
    """
    if images.ndim != 4:
        raise DiffIERParameterError("image", tuple(images.shape), "a (batch, height, width, channels) image tensor")
    batch, height, width, channels = images.shape
    layout = grid_layout(width, height, columns, rows, spacing, font_size)
    ink = _draw_mask(layout, columns, rows).to(device=images.device, dtype=images.dtype)
    out = (1.0 - ink).expand(batch, layout.height, layout.width).unsqueeze(-1).repeat(1, 1, 1, channels)
    if channels == 4:
        out[..., 3] = 1.0
    out[:, layout.header_height:, layout.margin_width:, :] = images
    return out
