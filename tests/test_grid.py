import pytest
from PIL import Image

from engine.workflows.grid import image_grid


def solid(color, size=(20, 10)):
    return Image.new("RGB", size, color)


def test_grid_geometry_and_row_major_order():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)]
    grid = image_grid([solid(c) for c in colors], rows=2, cols=2)
    assert grid.size == (40, 20)
    assert [grid.getpixel(p) for p in [(5, 5), (25, 5), (5, 15), (25, 15)]] == colors


def test_smaller_images_are_centred_not_stretched():
    grid = image_grid([solid((255, 0, 0), (20, 20)), solid((0, 0, 255), (10, 10))], rows=1, cols=2)
    assert grid.size == (40, 20)
    assert grid.getpixel((30, 10)) == (0, 0, 255)
    assert grid.getpixel((21, 1)) == (255, 255, 255)


def test_too_many_images_is_refused():
    with pytest.raises(ValueError, match="3 images do not fit a 1x2 grid"):
        image_grid([solid((0, 0, 0))] * 3, rows=1, cols=2)


def test_labelled_grid_geometry_labels_and_order():
    from PIL import ImageFont

    from engine.workflows.grid import fit_text, grid_layout, labelled_grid

    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 0), (0, 200, 200), (90, 90, 90)]
    cells = [solid(c, (96, 64)) for c in colors]
    grid = labelled_grid(
        cells, cols=3, rows=2, x_name="strength", x_labels=["0.3", "0.5", "0.8"], y_name="seed", y_labels=["1", "2"]
    )
    layout = grid_layout((96, 64), 3, 2, has_y=True)
    assert grid.size == layout.size == (layout.left + 3 * 96 + 2 * layout.gap, layout.top + 2 * 64 + layout.gap)
    for index, color in enumerate(colors):  # row-major: row = Y value, column = X value
        x0, y0 = layout.cell_box(index)
        assert grid.getpixel((x0 + 48, y0 + 32)) == color
    right_of_first, below_first = layout.cell_box(0)[0] + 96, layout.cell_box(0)[1] + 64
    assert layout.gap >= 4  # neighbouring cells are separated by white, not drawn as one picture
    assert grid.getpixel((right_of_first + layout.gap // 2, layout.top + 32)) == (255, 255, 255)
    assert grid.getpixel((layout.left + 48, below_first + layout.gap // 2)) == (255, 255, 255)
    header = grid.crop((layout.left, 0, grid.width, layout.top)).convert("L")
    assert min(header.getdata()) < 100, "axis labels are drawn in the header"
    font = ImageFont.load_default(size=layout.font_size)
    long_label = "<script>alert(1)</script> " + "word " * 50
    for line in fit_text(long_label, font, 80, 2):
        assert font.getlength(line) <= 80
    assert fit_text(long_label, font, 80, 2)[-1].endswith("…")


def test_missing_cells_are_marked_not_run():
    from engine.workflows.grid import labelled_grid

    grid = labelled_grid([solid((255, 0, 0), (96, 64)), None], cols=2, rows=1, x_name="seed", x_labels=["1", "2"])
    assert grid.getpixel((grid.width - 5, grid.height - 5)) == (235, 235, 235)
