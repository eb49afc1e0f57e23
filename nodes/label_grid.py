"""DiffIER Label Grid: row and column labels around a stitched comparison grid (the guidance sweep's output)."""

from __future__ import annotations

import torch

from .comfy_adapter import io
from .grid_drawing import MAX_FONT, label_grid, parse_labels


class DiffIERLabelGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERLabelGrid",
            display_name="DiffIER Label Grid",
            category="image/diffier",
            description="Draws column labels above and row labels left of a grid of equally sized tiles (e.g. "
                        "built with Image Stitch), so a saved comparison says what each tile is. The grid is "
                        "copied unchanged; white bands with black text are added.",
            inputs=[
                io.Image.Input("image", tooltip="The stitched grid (all tiles the same size)."),
                io.String.Input("columns", multiline=True, default="",
                                tooltip="One label per line, left to right; the line count is the column count. "
                                        "Empty: no header band."),
                io.String.Input("rows", multiline=True, default="",
                                tooltip="One label per line, top to bottom; the line count is the row count. "
                                        "Empty: no left margin."),
                io.Int.Input("spacing", default=8, min=0, max=1024,
                             tooltip="Pixels between tiles: the spacing_width the grid was stitched with."),
                io.Int.Input("font_size", default=0, min=0, max=MAX_FONT,
                             tooltip="Label height in pixels; 0 = automatic (tile width / 14)."),
            ],
            outputs=[io.Image.Output(tooltip="The grid with its labels.")],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, columns: str, rows: str, spacing: int, font_size: int) -> io.NodeOutput:
        return io.NodeOutput(label_grid(image, parse_labels(columns), parse_labels(rows), spacing, font_size))
