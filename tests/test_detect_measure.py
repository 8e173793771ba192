"""Ship measurement: lengths in ground metres, headings clockwise from up, Web-Mercator scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine

from routewatch.detect.measure import ground_pixel_size, measure_mask, measure_pixels


def rotated_rectangle(length_px: float, width_px: float, heading_deg: float, size: int = 101) -> np.ndarray:
    """Pixels whose centres fall in a rectangle centred in the image, long axis at ``heading_deg`` from up."""
    r, c = np.mgrid[0:size, 0:size].astype(float)
    r -= size // 2
    c -= size // 2
    h = math.radians(heading_deg)
    ux, uy = math.sin(h), -math.cos(h)  # unit vector of the heading in (x right, y down)
    along = c * ux + r * uy
    across = -c * uy + r * ux
    return (np.abs(along) <= length_px / 2) & (np.abs(across) <= width_px / 2)


@pytest.mark.parametrize("heading", [0.0, 30.0, 45.0, 90.0, 135.0, 160.0])
def test_rotated_rectangle_length_width_heading(heading: float) -> None:
    mask = rotated_rectangle(30, 5, heading)
    s = measure_mask(mask, 10.0)
    assert s.length_m == pytest.approx(300.0, abs=25.0)
    assert s.width_m == pytest.approx(50.0, abs=25.0)
    diff = abs((s.heading_deg - heading + 90) % 180 - 90)
    assert diff < 4.0, (s.heading_deg, heading)


def test_solid_line_measures_its_pixel_count() -> None:
    s = measure_pixels(np.zeros(12, int), np.arange(12), 10.0)
    assert s.length_m == pytest.approx(120.0)
    assert s.width_m == pytest.approx(10.0)
    assert s.heading_deg == pytest.approx(90.0)


def test_non_square_pixels_change_the_long_axis() -> None:
    # 10 rows x 4 columns of pixels; with rows 2 m and columns 10 m the east-west side is the long one.
    rr, cc = np.nonzero(np.ones((10, 4), bool))
    s = measure_pixels(rr, cc, (2.0, 10.0))
    assert s.length_m == pytest.approx(40.0, abs=0.5)
    assert s.width_m == pytest.approx(20.0, abs=0.5)
    assert s.heading_deg == pytest.approx(90.0, abs=1.0)


def test_web_mercator_pixel_is_smaller_on_the_ground_at_high_latitude() -> None:
    # A 10 m EPSG:3857 pixel at 60 degrees north covers about 5 m on the ground.
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, 60.0)
    tr = Affine(10.0, 0.0, x - 500.0, 0.0, -10.0, y + 500.0)
    dy, dx = ground_pixel_size(tr, "EPSG:3857", (100, 100))
    assert dx == pytest.approx(10.0 * math.cos(math.radians(60.0)), rel=0.01)
    assert dy == pytest.approx(dx, rel=0.01)


def test_utm_pixel_keeps_its_nominal_size() -> None:
    tr = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4_700_000.0)
    dy, dx = ground_pixel_size(tr, "EPSG:32652", (100, 100))
    assert dx == pytest.approx(10.0, rel=0.002)
    assert dy == pytest.approx(10.0, rel=0.002)


def test_empty_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        measure_pixels(np.array([]), np.array([]), 10.0)
