"""nodes/grid_drawing.py (what DiffIER Label Grid draws): labels around a stitched grid, the grid copied unchanged.

Bit-identical claims are about copied pixels (exact by construction on any CPU).
"""

import pytest
import torch
from pack_loader import import_pack_file

drawing = import_pack_file("nodes/grid_drawing.py")

COLS = ["CFG 3", "CFG 7.5", "CFG 15", "CFG 30"]
ROWS = ["plain KSampler", "KSampler (DiffIER)"]


def _grid(tile: int = 64, spacing: int = 8, cols: int = 4, rows: int = 2, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    w, h = cols * tile + (cols - 1) * spacing, rows * tile + (rows - 1) * spacing
    return torch.rand(2, h, w, channels, generator=g) * 0.5 + 0.25   # mid-grey noise: no pure black or white


def test_parse_labels_one_per_nonempty_line():
    assert drawing.parse_labels("  CFG 3\n\nCFG 7.5  \n") == ["CFG 3", "CFG 7.5"]
    assert drawing.parse_labels("") == []


def test_grid_is_copied_unchanged_below_and_right_of_the_bands():
    grid = _grid()
    out = drawing.label_grid(grid, COLS, ROWS, spacing=8)
    lay = drawing.grid_layout(grid.shape[2], grid.shape[1], COLS, ROWS, 8)
    assert (lay.tile_width, lay.tile_height) == (64, 64)
    assert out.shape == (2, grid.shape[1] + lay.header_height, grid.shape[2] + lay.margin_width, 3)
    assert lay.header_height > lay.font_size >= 10 and lay.margin_width > 0
    assert torch.equal(out[:, lay.header_height:, lay.margin_width:], grid)
    assert out.dtype == grid.dtype


def test_every_label_is_drawn_in_its_own_place():
    grid = _grid()
    out = drawing.label_grid(grid, COLS, ROWS, spacing=8)
    lay = drawing.grid_layout(grid.shape[2], grid.shape[1], COLS, ROWS, 8)
    header, margin = out[0, :lay.header_height, :, 0], out[0, :, :lay.margin_width, 0]
    assert header.max() == 1.0 and margin.max() == 1.0             # white bands ...
    for col in range(len(COLS)):                                   # ... with dark ink over every column
        x0 = lay.margin_width + col * (lay.tile_width + lay.spacing)
        assert header[:, x0:x0 + lay.tile_width].min() < 0.3, col
    for row in range(len(ROWS)):                                   # ... and left of every row
        y0 = lay.header_height + row * (lay.tile_height + lay.spacing)
        assert margin[y0:y0 + lay.tile_height].min() < 0.3, row
    corner = out[0, :lay.header_height, :lay.margin_width]
    assert torch.all(corner == 1.0)                                # nothing drawn in the empty corner


def test_labels_differ_so_the_drawing_depends_on_the_text():
    grid = _grid()
    a = drawing.label_grid(grid, COLS, ROWS, spacing=8)
    b = drawing.label_grid(grid, ["CFG 4", "CFG 7.5", "CFG 15", "CFG 30"], ROWS, spacing=8)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_no_labels_is_the_identity_and_alpha_stays_opaque():
    grid = _grid(channels=4)
    assert torch.equal(drawing.label_grid(grid, [], [], spacing=8), grid)
    out = drawing.label_grid(grid, COLS, [], spacing=8)
    assert out.shape[2] == grid.shape[2] and out.shape[1] > grid.shape[1]
    assert torch.all(out[:, : out.shape[1] - grid.shape[1], :, 3] == 1.0)


def test_font_size_sets_the_band_height():
    small = drawing.grid_layout(280, 136, COLS, ROWS, 8, font_size=12)
    big = drawing.grid_layout(280, 136, COLS, ROWS, 8, font_size=24)
    assert big.header_height > small.header_height and big.margin_width > small.margin_width
    auto_768 = drawing.grid_layout(4 * 768 + 24, 2 * 768 + 8, COLS, ROWS, 8)
    assert auto_768.font_size == round(768 / 14)


@pytest.mark.parametrize("kwargs, name", [
    ({"columns": COLS + ["CFG 50"]}, "columns"),        # 280 - 4*8 = 248 px does not split into 5 tiles
    ({"rows": ["a", "b", "c", "d", "e"]}, "rows"),       # 136 - 4*8 = 104 px does not split into 5 tiles
    ({"spacing": 7}, "columns"),
    ({"spacing": -1}, "spacing"),
    ({"font_size": 1000}, "font_size"),
])
def test_bad_geometry_names_the_parameter(kwargs, name):
    args = {"columns": COLS, "rows": ROWS, "spacing": 8, "font_size": 0, **kwargs}
    with pytest.raises(drawing.DiffIERParameterError) as err:
        drawing.label_grid(_grid(), **args)
    assert err.value.name == name and f"'{name}'" in str(err.value)


def test_not_an_image_tensor():
    with pytest.raises(drawing.DiffIERParameterError, match="'image'"):
        drawing.label_grid(torch.zeros(8, 8, 3), COLS, ROWS, spacing=8)


def test_bitmap_font_fallback_still_draws_every_label(monkeypatch):
    """Pillow without FreeType has only a bitmap font (no anchors, no sizes): labels are still drawn."""
    from PIL import ImageFont

    monkeypatch.setattr(drawing, "_font", lambda size: ImageFont.load_default_imagefont())
    grid = _grid()
    out = drawing.label_grid(grid, COLS, ROWS, spacing=8)
    lay = drawing.grid_layout(grid.shape[2], grid.shape[1], COLS, ROWS, 8)
    assert torch.equal(out[:, lay.header_height:, lay.margin_width:], grid)
    for col in range(len(COLS)):
        x0 = lay.margin_width + col * (lay.tile_width + lay.spacing)
        assert out[0, :lay.header_height, x0:x0 + lay.tile_width, 0].min() < 0.3, col
