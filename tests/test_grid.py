import pytest
from PIL import Image

from engine.grid import image_grid


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
