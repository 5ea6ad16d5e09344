"""Comparison grids, pure PIL (no torch), so they can be tested and used anywhere."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def image_grid(
    images: Sequence[Image.Image], rows: int, cols: int, *, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Paste images into a rows x cols grid, row-major, like diffusers' make_image_grid.

    Cells take the size of the largest image; smaller images are centred, never stretched.

    Raises:
        ValueError: more images than cells, or no images.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if rows < 1 or cols < 1 or len(images) > rows * cols:
        raise ValueError(f"{len(images)} images do not fit a {rows}x{cols} grid")
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), background)
    for index, im in enumerate(images):
        row, col = divmod(index, cols)
        x = col * cell_w + (cell_w - im.width) // 2
        y = row * cell_h + (cell_h - im.height) // 2
        grid.paste(im.convert("RGB"), (x, y))
    return grid
