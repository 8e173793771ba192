"""SAR CFAR: planted ships are found and measured, clutter stays quiet, the fast path agrees with the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from routewatch.detect.evaluate import Scores, load_gray, load_voc, sar_chips, score
from routewatch.detect.sar import (
    cfar_hits,
    cfar_hits_reference,
    cluster_hits,
    detect_sar,
)

# F1 of the fixed CFAR settings on all shared SAR chips (chosen leave-one-chip-out; see docs/evaluation.md).
SAR_F1_REACHED = 0.651


def clutter(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """K-like sea clutter amplitude (gamma texture x exponential speckle), uint16."""
    rng = np.random.default_rng(seed)
    tex = np.repeat(np.repeat(rng.gamma(8.0, 1 / 8.0, (shape[0] // 32 + 1, shape[1] // 32 + 1)), 32, 0), 32, 1)
    inten = rng.standard_exponential(shape) * tex[: shape[0], : shape[1]]
    return np.clip(np.sqrt(inten) * 200.0, 0, 65535).astype(np.uint16)


def plant(img: np.ndarray, r: int, c: int, length: int, width: int, vertical: bool, value: int = 3000) -> None:
    if vertical:
        img[r - length // 2 : r - length // 2 + length, c - width // 2 : c - width // 2 + width] = value
    else:
        img[r - width // 2 : r - width // 2 + width, c - length // 2 : c - length // 2 + length] = value


def test_planted_ships_found_and_measured() -> None:
    img = clutter((600, 700))
    ships = [(100, 100, 20, 4, True), (300, 350, 30, 5, False), (500, 600, 12, 3, True)]
    for s in ships:
        plant(img, *s)
    dets = detect_sar(img, pixel_size_m=10.0)
    assert len(dets) == 3, [(d.row, d.col) for d in dets]
    for r, c, length, _w, vertical in ships:
        d = min(dets, key=lambda d: np.hypot(d.row - r, d.col - c))
        assert np.hypot(d.row - r, d.col - c) < 2.0
        assert d.length_m == pytest.approx(length * 10.0, abs=15.0)
        assert d.heading_deg == pytest.approx(0.0 if vertical else 90.0, abs=5.0)
        assert 0.0 < d.score <= 1.0


def test_pure_clutter_gives_few_false_alarms() -> None:
    img = clutter((1024, 1024), seed=11)
    assert len(detect_sar(img, pixel_size_m=10.0)) <= 2


def test_water_mask_keeps_land_targets_out() -> None:
    img = clutter((400, 400))
    plant(img, 100, 100, 20, 4, True)
    plant(img, 300, 300, 20, 4, True)
    water = np.ones(img.shape, bool)
    water[200:, 200:] = False  # the second "ship" is on land
    dets = detect_sar(img, pixel_size_m=10.0, water=water)
    assert len(dets) == 1
    assert dets[0].row == pytest.approx(100, abs=2) and dets[0].col == pytest.approx(100, abs=2)


def test_fast_hits_match_reference_on_clutter_with_ships() -> None:
    img = clutter((512, 768), seed=5)
    for r, c in [(60, 80), (200, 400), (450, 700), (300, 100)]:
        plant(img, r, c, 16, 3, r % 2 == 0)
    fast = set(zip(*cfar_hits(img, pixel_size_m=10.0), strict=True))
    ref = set(zip(*cfar_hits_reference(img, pixel_size_m=10.0), strict=True))
    ship_ref = {p for p in ref if img[p] == 3000}
    ship_fast = {p for p in fast if img[p] == 3000}
    assert len(ship_fast & ship_ref) >= 0.95 * len(ship_ref)


def test_fast_path_is_independent_of_tiling_and_threads() -> None:
    img = clutter((700, 500), seed=9)
    plant(img, 350, 250, 20, 4, True)
    a = cfar_hits(img, pixel_size_m=10.0, tile_rows=64, threads=2)
    b = cfar_hits(img, pixel_size_m=10.0, tile_rows=4096, threads=1)
    assert sorted(zip(*a, strict=True)) == sorted(zip(*b, strict=True))


def test_cluster_hits_equals_8_connected_labels_for_gap_1() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((80, 90)) > 0.85
    rr, cc = np.nonzero(mask)
    labels = cluster_hits(rr, cc, gap=1)
    ref, n = ndimage.label(mask, structure=np.ones((3, 3)))
    assert len(set(labels)) == n
    # Same partition: each reference component maps to exactly one cluster label and vice versa.
    pairs = set(zip(ref[rr, cc], labels, strict=True))
    assert len(pairs) == n


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="pixel_size_m"):
        detect_sar(np.zeros((10, 10)), pixel_size_m=0)
    with pytest.raises(ValueError, match="water mask shape"):
        detect_sar(np.zeros((64, 64), np.uint16), pixel_size_m=10, water=np.ones((10, 10), bool))


def _chip_scores(shared: Path, reference: bool) -> Scores:
    total = Scores(0, 0, 0)
    for img_path, xml in sar_chips(shared / "data" / "sar-chips"):
        dets = detect_sar(load_gray(img_path), pixel_size_m=10.0, reference=reference)
        total = total + score(dets, load_voc(xml), pixel_size_m=10.0)
    return total


@pytest.mark.shared
def test_fast_and_reference_cfar_agree_on_shared_chips(shared_dir: Path) -> None:
    fast, ref = _chip_scores(shared_dir, False), _chip_scores(shared_dir, True)
    assert abs(fast.f1 - ref.f1) <= 0.01, (fast.as_dict(), ref.as_dict())


@pytest.mark.shared
def test_sar_f1_does_not_regress(shared_dir: Path) -> None:
    s = _chip_scores(shared_dir, False)
    assert s.f1 >= SAR_F1_REACHED - 0.03, s.as_dict()
