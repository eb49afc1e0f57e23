"""DiffIER Label Grid inside a real, in-process ComfyUI: labels a grid built by ComfyUI's own ImageStitch.

``torch.equal`` is about copied pixels (exact on any CPU); the tile check's 1e-2 only locates the tile in the
stitched grid (a wrong position misses by the tiles' own contrast, ~0.25), far above any float32 rounding.
"""

from __future__ import annotations

import pytest
import torch
from pack_loader import import_pack_file

pytestmark = pytest.mark.integration

drawing = import_pack_file("nodes/grid_drawing.py")


def _stitch(run_node, tiles: list[torch.Tensor], direction: str, spacing: int, color: str) -> torch.Tensor:
    left = tiles[0]
    for right in tiles[1:]:
        (left,) = run_node("ImageStitch", image1=left, direction=direction, match_image_size=True,
                           spacing_width=spacing, spacing_color=color, image2=right)
    return left


def test_node_is_registered_with_tooltips(comfy_nodes):
    cls = comfy_nodes.NODE_CLASS_MAPPINGS["DiffIERLabelGrid"]
    info = cls.GET_NODE_INFO_V1()
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["DiffIERLabelGrid"] == "DiffIER Label Grid"
    assert info["description"]
    for name, spec in info["input"]["required"].items():
        assert spec[1].get("tooltip"), name
    assert "0 = automatic" in info["input"]["required"]["font_size"][1]["tooltip"]


def test_labels_a_grid_stitched_by_comfyui(run_node):
    g = torch.Generator().manual_seed(3)
    tiles = [[torch.rand(1, 64, 64, 3, generator=g) * 0.5 + 0.25 for _ in range(4)] for _ in range(2)]
    rows = [_stitch(run_node, row, "right", 8, "white") for row in tiles]
    grid = _stitch(run_node, rows, "down", 8, "black")
    assert grid.shape == (1, 136, 280, 3)
    columns, labels = "CFG 3\nCFG 7.5\nCFG 15\nCFG 30", "plain KSampler\nKSampler (DiffIER)"
    (out,) = run_node("DiffIERLabelGrid", image=grid, columns=columns, rows=labels, spacing=8, font_size=0)
    lay = drawing.grid_layout(280, 136, drawing.parse_labels(columns), drawing.parse_labels(labels), 8)
    assert out.shape == (1, 136 + lay.header_height, 280 + lay.margin_width, 3)
    assert torch.equal(out[:, lay.header_height:, lay.margin_width:], grid)
    assert out[0, :lay.header_height].min() < 0.3                  # ink in the header band
    x0 = lay.margin_width + 64 + 8                                  # second tile of the top row, where it was
    torch.testing.assert_close(out[0, lay.header_height:lay.header_height + 64, x0:x0 + 64], tiles[0][1][0],
                               atol=1e-2, rtol=0)


def test_label_count_that_does_not_fit_the_grid_is_a_clear_error(run_node):
    grid = torch.rand(1, 136, 280, 3)
    with pytest.raises(ValueError, match="parameter 'columns' must be .*280 px.*got 5"):
        run_node("DiffIERLabelGrid", image=grid, columns="a\nb\nc\nd\ne", rows="", spacing=8, font_size=0)
