"""Comparison grids, pure PIL (no torch), so they can be tested and used anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont  # what ImageFont.load_default returns


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


@dataclass(frozen=True)
class GridLayout:
    """Geometry of a labelled grid; depends only on cell size and counts, so sweeps can plan it ahead."""

    cell_w: int
    cell_h: int
    cols: int
    rows: int
    top: int  # header band: X axis name, then one label row
    left: int  # Y labels column (0 without a Y axis)
    font_size: int
    pad: int
    gap: int = 0  # white space between neighbouring cells

    @property
    def size(self) -> tuple[int, int]:
        return (
            self.left + self.cols * self.cell_w + (self.cols - 1) * self.gap,
            self.top + self.rows * self.cell_h + (self.rows - 1) * self.gap,
        )

    def cell_box(self, index: int) -> tuple[int, int]:
        """The top-left corner of cell `index` (row-major)."""
        row, col = divmod(index, self.cols)
        return self.left + col * (self.cell_w + self.gap), self.top + row * (self.cell_h + self.gap)


LABEL_LINES = 2  # lines a column label may take before it is shortened


def grid_layout(cell_size: tuple[int, int], cols: int, rows: int, *, has_y: bool) -> GridLayout:
    """Label sizes scale with the cells so text stays legible at the image's own size."""
    cell_w, cell_h = cell_size
    font_size = max(12, min(48, cell_w // 14))
    pad = max(4, font_size // 3)
    line = int(font_size * 1.25)
    top = pad + line + pad + LABEL_LINES * line + pad
    left = max(font_size * 8, min(cell_w, font_size * 12)) if has_y else 0
    gap = max(4, min(cell_w, cell_h) // 32)  # cells read as separate images, not one picture
    return GridLayout(cell_w, cell_h, cols, rows, top, left, font_size, pad, gap)


def _longest_fitting(text: str, font: Font, max_width: int) -> int:
    """How many leading characters of `text` fit in max_width (at least 1): a binary search on width."""
    low, high = 1, min(len(text), max(1, max_width))  # no glyph is narrower than a pixel, bar a few
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low


def _fits(text: str, font: Font, max_width: int) -> bool:
    """Whether text fits in max_width; text of more characters than pixels is not measured (measuring
    costs in proportion to its length, and no glyph is narrower than a pixel, bar a few)."""
    return len(text) <= max_width and font.getlength(text) <= max_width


def fit_text(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """Wrap text to max_width; past max_lines the last line ends with an ellipsis. Never wider than allowed.

    The work is bounded by what can be shown, not by the text: only as many characters as max_lines
    lines of one-pixel glyphs could hold are looked at, wrapping stops once a line more than allowed is
    made, and a word wider than the column is cut by a binary search on its width.
    """
    visible = max(1, max_lines) * max(1, max_width) + 1  # no glyph is narrower than a pixel, bar a few
    words = text[:visible].replace("\n", " ").split()
    lines: list[str] = []
    current = ""
    for word in words:
        if len(lines) > max_lines:
            break
        candidate = f"{current} {word}".strip()
        if _fits(candidate, font, max_width):
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(lines) <= max_lines and not _fits(word, font, max_width):  # wider than the column: cut it
            cut = _longest_fitting(word, font, max_width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines or len(text) > visible:
        lines = lines[:max_lines]
        last = lines[-1] if lines else ""
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        lines[-1:] = [last + "…"]
    return lines or [""]


def labelled_grid(
    cells: Sequence[Image.Image | None],
    *,
    cols: int,
    rows: int,
    x_name: str,
    x_labels: Sequence[str],
    y_name: str | None = None,
    y_labels: Sequence[str] = (),
    cell_size: tuple[int, int] | None = None,
) -> Image.Image:
    """A comparison grid with the X axis name and values along the top and Y values down the left.

    Cells are row-major (row = Y value, column = X value); None marks a cell that did not run.
    Text is drawn as text, so labels holding markup are harmless; text that does not fit is wrapped
    and then shortened with an ellipsis, never drawn off the image.
    """
    if len(cells) != cols * rows or len(x_labels) != cols or (y_name is not None and len(y_labels) != rows):
        raise ValueError(f"{len(cells)} cells and {len(x_labels)}x{len(y_labels)} labels do not match {cols}x{rows}")
    present = [c for c in cells if c is not None]
    if cell_size is None:
        if not present:
            raise ValueError("labelled_grid needs a cell size when no cell has an image")
        cell_size = (max(c.width for c in present), max(c.height for c in present))
    layout = grid_layout(cell_size, cols, rows, has_y=y_name is not None)
    canvas = Image.new("RGB", layout.size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=layout.font_size)
    bold = ImageFont.load_default(size=int(layout.font_size * 1.1))
    line = int(layout.font_size * 1.25)
    pad = layout.pad

    grid_width = layout.size[0] - layout.left
    title = fit_text(f"X: {x_name}", bold, grid_width - 2 * pad, 1)[0]
    draw.text((layout.left + grid_width / 2, pad), title, fill=(20, 20, 20), font=bold, anchor="ma")
    for col, label in enumerate(x_labels):
        x0, _ = layout.cell_box(col)
        for i, text in enumerate(fit_text(str(label), font, layout.cell_w - 2 * pad, LABEL_LINES)):
            draw.text(
                (x0 + layout.cell_w / 2, 2 * pad + line + i * line), text, fill=(0, 0, 0), font=font, anchor="ma"
            )
    if y_name is not None:
        corner = fit_text(f"Y: {y_name}", bold, layout.left - 2 * pad, LABEL_LINES)
        for i, text in enumerate(corner):
            draw.text((pad, 2 * pad + line + i * line), text, fill=(20, 20, 20), font=bold)
        max_lines = max(1, (layout.cell_h - 2 * pad) // line)
        for row, label in enumerate(y_labels):
            lines = fit_text(str(label), font, layout.left - 2 * pad, max_lines)
            y0 = layout.cell_box(row * cols)[1] + (layout.cell_h - len(lines) * line) / 2
            for i, text in enumerate(lines):
                draw.text((pad, y0 + i * line), text, fill=(0, 0, 0), font=font)

    for index, cell in enumerate(cells):
        x0, y0 = layout.cell_box(index)
        if cell is None:
            draw.rectangle([x0 + 1, y0 + 1, x0 + layout.cell_w - 2, y0 + layout.cell_h - 2], fill=(235, 235, 235))
            draw.text(
                (x0 + layout.cell_w / 2, y0 + layout.cell_h / 2),
                "not run",
                fill=(120, 120, 120),
                font=font,
                anchor="mm",
            )
            continue
        canvas.paste(
            cell.convert("RGB"), (x0 + (layout.cell_w - cell.width) // 2, y0 + (layout.cell_h - cell.height) // 2)
        )
    return canvas
