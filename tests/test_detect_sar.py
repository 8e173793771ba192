"""SAR CFAR: planted ships are found and measured, clutter stays quiet, the fast path agrees with the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from routewatch.detect import sar
from routewatch.detect.evaluate import Scores, load_gray, load_voc, sar_chips, score
from routewatch.detect.sar import (
    CfarParams,
    censored_hits,
    cfar_hits,
    cfar_hits_reference,
    cluster_hits,
    detect_sar,
    group_hits,
    ring_threshold_at,
    targets_from_hits,
    with_neighbour,
)
from routewatch.detect.water import sar_water
from routewatch.simulate.scenes import sea_clutter

# F1 of the fixed CFAR settings on all shared SAR chips, each searched inside its image-derived water mask as the
# imagery pipeline does (settings chosen under false-alarm and simulated-recall bounds; held out: 0.79; see
# docs/evaluation.md).
SAR_F1_REACHED = 0.851


def clutter(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """K-like single-look sea clutter amplitude (gamma texture x exponential speckle), uint16."""
    return sea_clutter(shape, seed)


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
    img = clutter((1024, 1024), seed=21)  # not one of the clutter images the settings were chosen under
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


def test_a_ship_across_a_tile_edge_keeps_the_pixel_whose_only_neighbour_is_in_the_next_tile() -> None:
    """Lone candidates are dropped inside each tile; the rows just outside the tile count as neighbours."""
    img = clutter((700, 500), seed=9)
    img[63, 100] = 3000  # its only bright neighbour, (64, 101), lies in the next 64-row tile
    img[64:77, 101] = 3000
    img[128, 300] = 3000  # its only bright neighbour, (127, 301), lies in the tile before
    img[115:128, 301] = 3000
    a = set(zip(*cfar_hits(img, pixel_size_m=10.0, tile_rows=64, threads=2), strict=True))
    b = set(zip(*cfar_hits(img, pixel_size_m=10.0, tile_rows=4096, threads=1), strict=True))
    assert (63, 100) in b and (128, 300) in b
    assert a == b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_neighbour_keeps_exactly_the_candidates_with_a_neighbour(seed: int) -> None:
    rng = np.random.default_rng(seed)
    full = rng.random((42, 37)) > 0.9
    full[:, 0] |= rng.random(42) > 0.5  # crowded edges
    full[-1] |= rng.random(37) > 0.5
    full[8:12, 3:9] = False
    full[10, 5] = full[9, 6] = True  # a pair across the strip's top edge below
    near = ndimage.convolve(full.astype(int), np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]]), mode="constant") > 0
    want = full & near
    assert np.array_equal(with_neighbour(full), want)
    # a strip of the middle rows, told the rows just outside it
    assert np.array_equal(with_neighbour(full[10:30], full[9], full[30]), want[10:30])
    assert want[10, 5] and not with_neighbour(full[10:30])[0, 5]  # the row outside does matter


@pytest.mark.parametrize("shape", [(16 * 7 + 5, 16 * 9 + 3), (16 * 7, 16 * 9)])  # ragged (padded blocks), whole
def test_block_sums_by_strips_and_threads_equal_one_sum_over_each_block(
        monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 4000, shape).astype(np.uint16)
    water = rng.random(img.shape) > 0.3
    monkeypatch.setattr(sar, "STRIP_BLOCKS", 2)
    step, block = sar.STEP, sar.BLOCK
    for wet in (None, water):
        got = sar._block_sums(img, wet, threads=2)
        assert all(np.array_equal(x, y) for x, y in zip(got, sar._block_sums(img, wet, threads=1), strict=True))
        sample = img[step // 2 :: step, step // 2 :: step].astype(np.float64)
        wt = np.ones(sample.shape) if wet is None else wet[step // 2 :: step, step // 2 :: step].astype(np.float64)
        spb = block // step
        for bi in range(got[0].shape[0]):
            for bj in range(got[0].shape[1]):
                box = np.s_[bi * spb : (bi + 1) * spb, bj * spb : (bj + 1) * spb]
                want = [wt[box].sum(), (sample[box] * wt[box]).sum(), (sample[box] ** 2 * wt[box]).sum()]
                assert [x[bi, bj] for x in got] == pytest.approx(want, rel=1e-6)


def test_small_and_large_hit_lists_are_labelled_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    rows, cols = rng.integers(0, 300, 2500), rng.integers(0, 400, 2500)
    for gap in (1, 3):
        small = cluster_hits(rows, cols, gap)
        monkeypatch.setattr(sar, "SMALL_GRAPH", 0)  # scipy's csgraph for every size
        large = cluster_hits(rows, cols, gap)
        monkeypatch.undo()
        assert np.array_equal(small, large)
        assert len(set(small)) < rows.size  # the random hits do join


@pytest.mark.parametrize("gap", [1, 2, 3, 7, 30])
def test_hits_drawn_on_a_raster_cluster_as_the_neighbour_look_ups_do(gap: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide gaps (metre pixels) cluster on a raster of squares; the same clusters, numbered alike, as the
    neighbour look-ups, also for hits exactly ``gap`` apart and one more."""
    rng = np.random.default_rng(gap)
    key = rng.choice(300 * 260, 900, replace=False)
    rows, cols = key // 260, key % 260
    rows = np.concatenate([rows, [1000, 1000 + gap, 2000, 2000 + gap + 1]])  # just close enough, just too far
    cols = np.concatenate([cols, [5, 5 + gap, 5, 5]])
    raster = sar._clusters_on_raster(rows.astype(np.int64), cols.astype(np.int64), gap)
    monkeypatch.setattr(sar, "DENSE_MAX_PX", 0)
    looked_up = cluster_hits(rows, cols, gap)
    assert np.array_equal(raster, looked_up) and raster.dtype == looked_up.dtype
    assert raster[-4] == raster[-3] and raster[-2] != raster[-1]


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


def _chip_scores(shared: Path, reference: bool, block_path: bool = False) -> Scores:
    """Pooled scores on the shared chips inside derived water; ``block_path`` forces the fast path's block screen
    (chips are smaller than four window areas, so ``detect_sar`` would use the reference filters)."""
    total = Scores(0, 0, 0)
    for img_path, xml in sar_chips(shared / "data" / "sar-chips"):
        img = load_gray(img_path)
        water = sar_water(img, pixel_size_m=10.0)
        if block_path:
            hits = censored_hits(img, lambda im, **kw: cfar_hits(im, small_image_reference=False, **kw),
                                 pixel_size_m=10.0, water=water)
            dets = targets_from_hits(img, *hits, pixel_size_m=10.0)
        else:
            dets = detect_sar(img, pixel_size_m=10.0, water=water, reference=reference)
        total = total + score(dets, load_voc(xml), pixel_size_m=10.0)
    return total


@pytest.mark.shared
def test_fast_and_reference_cfar_agree_on_shared_chips(shared_dir: Path) -> None:
    fast, ref = _chip_scores(shared_dir, False, block_path=True), _chip_scores(shared_dir, True)
    assert abs(fast.f1 - ref.f1) <= 0.01, (fast.as_dict(), ref.as_dict())


@pytest.mark.shared
def test_sar_f1_does_not_regress(shared_dir: Path) -> None:
    s = _chip_scores(shared_dir, False)
    assert s.f1 >= SAR_F1_REACHED - 0.03, s.as_dict()


def test_group_hits_drops_speckle_before_joining_the_blobs_of_one_ship() -> None:
    """A ship returning as two blobs 3 pixels apart is one target; a scatter of small speckle blobs just as close
    together is none (joined first, they would chain into a false target)."""
    ship = [(r, c) for r in range(10, 14) for c in range(10, 13)] + [(r, c) for r in range(16, 20) for c in range(10, 13)]
    speckle = [(40 + 3 * i, 40 + 3 * j) for i in range(5) for j in range(5)]  # 25 single hits, 3 px apart
    rows = np.array([p[0] for p in ship + speckle])
    cols = np.array([p[1] for p in ship + speckle])
    params = CfarParams(cluster_gap_px=3, min_pixels=12, blob_pixels=5)
    r, c, labels = group_hits(rows, cols, params)
    assert sorted(zip(r.tolist(), c.tolist(), strict=True)) == sorted(ship) and len(set(labels.tolist())) == 1
    r, _, _ = group_hits(rows, cols, CfarParams(cluster_gap_px=3, min_pixels=12, blob_pixels=1))
    assert r.size == len(ship) + len(speckle)  # without the blob rule the speckle makes a 25-hit "target"


@pytest.fixture(params=["squares", "table"])
def exact_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each of the exact test's two ways: squares of candidates reading their neighbourhoods, or a summed-area
    table of the whole (mirrored) image, which it takes when the neighbourhoods would cost more."""
    monkeypatch.setattr(sar, "SAT_WORTH", 0 if request.param == "table" else 10**9)
    return str(request.param)


@pytest.mark.parametrize("water", [False, True])
def test_exact_ring_threshold_equals_the_reference_filter(water: bool, exact_path: str) -> None:
    """The fast path's exact test (prefix sums between box-edge rows only, or a summed-area table) gives the
    reference ring threshold at every pixel asked, near the image edges (reflected) and with a water mask."""
    from scipy import ndimage

    img = clutter((150, 170), seed=4).astype(np.float64)
    w = np.ones(img.shape, bool)
    if water:
        w[:, :60] = False
    g, b = 6, 15
    wt = w.astype(np.float64)
    sums = []
    for a in (wt, img * wt, img * img * wt):
        outer = ndimage.uniform_filter(a, 2 * b + 1, mode="reflect") * (2 * b + 1) ** 2
        inner = ndimage.uniform_filter(a, 2 * g + 1, mode="reflect") * (2 * g + 1) ** 2
        sums.append(outer - inner)
    n = np.maximum(sums[0], 1.0)
    mean = sums[1] / n
    ref = mean + 4.0 * np.sqrt(np.maximum(sums[2] / n - mean * mean, 0.0))
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 150, 400), rng.integers(0, 170, 400)
    for cell in (8, 32, 64):
        got = ring_threshold_at(img.astype(np.uint16), w if water else None, rows, cols, g, b, 4.0, cell=cell)
        assert np.allclose(got, ref[rows, cols], rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("water", [False, True])
def test_exact_ring_threshold_with_a_window_wider_than_the_image(water: bool, exact_path: str) -> None:
    """Metre pixels or small chips: the ring reaches past the image more than once; the reflection must repeat
    as scipy's does (a single reflection, then clipping, was 5 % off)."""
    from scipy import ndimage

    img = clutter((100, 90), seed=6).astype(np.float64)
    w = np.ones(img.shape, bool)
    if water:
        w[60:, :] = False
    wt = w.astype(np.float64)
    g, b = 80, 120
    sums = []
    for a in (wt, img * wt, img * img * wt):
        outer = ndimage.uniform_filter(a, 2 * b + 1, mode="reflect") * (2 * b + 1) ** 2
        inner = ndimage.uniform_filter(a, 2 * g + 1, mode="reflect") * (2 * g + 1) ** 2
        sums.append(outer - inner)
    mean = sums[1] / sums[0]
    ref = mean + 4.0 * np.sqrt(np.maximum(sums[2] / sums[0] - mean * mean, 0.0))
    rows, cols = np.mgrid[0:100:7, 0:90:7]
    got = ring_threshold_at(img.astype(np.uint16), w if water else None, rows.ravel(), cols.ravel(), g, b, 4.0)
    assert np.allclose(got, ref[rows.ravel(), cols.ravel()], rtol=1e-9)


def test_a_ship_on_metre_pixels_is_found_as_the_reference_finds_it_without_reading_the_window_per_square(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1 m the ring (2.4 km) is wider than an 800 x 800 port window: every square of candidates had read a
    2,400 px neighbourhood (3.9 s where the reference took 0.2 s); the summed-area table reads the image once."""
    img = clutter((800, 800), seed=3).astype(np.float32)
    img[300:420, 400:420] = 3000  # 120 x 20 m
    img[600:640, 100:110] = 2500  # 40 x 10 m
    params = CfarParams().at(1.0)
    read: list[int] = []
    squares = sar._reflect
    monkeypatch.setattr(sar, "_reflect", lambda idx, n: read.append(idx.size) or squares(idx, n))
    fast = targets_from_hits(img, *cfar_hits(img, pixel_size_m=1.0, params=params), pixel_size_m=1.0, params=params)
    ref = targets_from_hits(img, *cfar_hits_reference(img, pixel_size_m=1.0, params=params), pixel_size_m=1.0,
                            params=params)
    found = sorted((round(d.row), round(d.col), round(d.length_m)) for d in fast)
    assert found == sorted((round(d.row), round(d.col), round(d.length_m)) for d in ref)
    assert [(r // 10, c // 10, n) for r, c, n in found] == [(36, 41, 120), (62, 10, 40)]
    assert not read  # no square read its reflected neighbourhood


def test_nan_no_data_neither_poisons_the_clutter_statistics_nor_becomes_a_target() -> None:
    """Float images carry no-data as NaN; NaN in a ring sum would make every threshold NaN and hide all ships."""
    img = clutter((300, 300)).astype(np.float32)
    plant(img, 150, 200, 20, 4, True)
    img[:, :40] = np.nan
    for water in (None, np.ones(img.shape, bool)):
        dets = detect_sar(img, pixel_size_m=10.0, water=water)
        assert [(round(d.row), round(d.col)) for d in dets] == [(150, 200)]


def test_a_targets_score_does_not_depend_on_the_pixel_type() -> None:
    """The same hull on the same clutter scores the same as uint16, float32, calibrated float or a uint8 rendering
    (it had been scored against the type's range: 0.09 as uint16, 0.99 as float); a dimmer hull scores lower."""
    rng = np.random.default_rng(0)
    sea = rng.gamma(1.0, 100.0, (300, 300))
    scores = {}
    for level in (3000.0, 900.0):
        img = sea.copy()
        img[140:160, 148:152] = level
        for name, arr in (("u16", img.astype(np.uint16)), ("f32", img.astype(np.float32)),
                          ("calibrated", (img / 1e4).astype(np.float32)),
                          ("u8", np.clip(img / 12, 0, 255).astype(np.uint8))):
            (d,) = detect_sar(arr, pixel_size_m=10.0)
            scores[level, name] = d.score
    for level in (3000.0, 900.0):
        values = [v for (lv, _), v in scores.items() if lv == level]
        assert max(values) - min(values) < 0.05, scores
    assert scores[900.0, "f32"] < scores[3000.0, "f32"]


def test_the_clutter_level_that_scores_a_target_is_taken_over_the_water() -> None:
    """A port window is mostly bright land: scored against all pixels, the same hull on the same sea scored 0.3
    instead of 1. With the water mask the level is the sea's."""
    rng = np.random.default_rng(0)
    sea = rng.gamma(1.0, 60.0, (300, 300))
    sea[140:160, 148:152] = 3000
    land = sea.copy()
    land[:, :140] += 1000
    land[:, 160:] += 1000
    water = np.zeros(sea.shape, bool)
    water[:, 140:160] = True
    open_sea = detect_sar(sea, pixel_size_m=10.0, water=np.ones(sea.shape, bool))[0].score
    (in_port,) = detect_sar(land, pixel_size_m=10.0, water=water)
    assert in_port.score == pytest.approx(open_sea, abs=0.02)


def test_an_intensity_image_said_so_finds_what_its_amplitude_finds() -> None:
    """sigma0 and gamma0 products are power: read as amplitude, their clutter tails (twice as heavy) made twice
    the targets at a port. Said to be intensity, the square root is taken and the targets are the amplitude's."""
    img = clutter((600, 700)).astype(np.float32)
    for s in [(100, 100, 20, 4, True), (300, 350, 30, 5, False), (500, 600, 12, 3, True)]:
        plant(img, *s)
    power = (img / 1000.0) ** 2  # a calibrated coefficient: mostly below 1
    def found(image, **kw):
        return [(round(d.row), round(d.col), round(d.length_m), round(d.score, 3))
                for d in detect_sar(image, pixel_size_m=10.0, **kw)]

    amp = found(img)
    assert len(amp) == 3
    assert found(power, values="intensity") == amp
    assert found(power) != amp  # read as amplitude, its contrast (and at a port its clutter) is another image's
    with pytest.raises(ValueError, match="values must be one of amplitude, intensity"):
        detect_sar(img, pixel_size_m=10.0, values="db")


def test_a_loud_ship_in_the_ring_does_not_hide_a_fainter_one_in_open_water() -> None:
    """A 300 m tanker 1 km from a 100 m ship lies in the ship's background ring (800-1200 m): uncensored, its echo
    raised the ship's threshold above the ship (none of such ships had been found on simulated anchorages).
    Censoring the loud targets of a first pass finds both, on the fast path and the reference alike; on pure
    clutter it changes nothing."""
    img = clutter((900, 900), seed=8).astype(np.float64)
    level = float(np.median(img))
    ships = [(200, 200), (200, 650), (650, 200), (650, 650)]
    for r, c in ships:
        plant(img, r, c, 10, 2, True, value=int(6 * level))  # 100 m, 15 dB over the sea
        plant(img, r, c + 100, 30, 5, False, value=int(60 * level))  # 300 m tanker, 35 dB, 1 km east
    img = img.astype(np.uint16)
    sea = np.ones(img.shape, bool)  # open water, as the derived mask gives it: censoring needs a mask to say so
    for reference in (False, True):
        dets = detect_sar(img, pixel_size_m=10.0, reference=reference, water=sea)
        found = [min(np.hypot(d.row - r, d.col - c) for d in dets) < 4 for r, c in ships]
        assert all(found), (reference, found)
        plain = targets_from_hits(img, *(cfar_hits_reference(img, pixel_size_m=10.0)), pixel_size_m=10.0)
        assert sum(min(np.hypot(d.row - r, d.col - c) for d in plain) < 4 for r, c in ships) < 4  # the masking
    assert sum(min(np.hypot(d.row - r, d.col - c) for d in detect_sar(img, pixel_size_m=10.0)) < 4
               for r, c in ships) < 4  # without a mask nothing says the water is open: nothing is censored
    clear = clutter((1024, 1024), seed=21)
    assert len(detect_sar(clear, pixel_size_m=10.0, water=np.ones(clear.shape, bool))) == len(targets_from_hits(
        clear, *cfar_hits(clear, pixel_size_m=10.0), pixel_size_m=10.0))


def test_the_grouping_rules_hold_their_ground_size_on_finer_pixels() -> None:
    """Pixel counts chosen at 10 m: on a scene resampled to 2.5 m, correlated speckle had made false targets
    (1,180 per 1,000 km2 on a simulated GRD); the gap scales with the pixel and the counts with its side."""
    p = CfarParams().at(2.5)
    assert (p.cluster_gap_px, p.blob_pixels, p.min_pixels) == (12, 20, 48)
    assert CfarParams().at(10.0) == CfarParams() == CfarParams().at(20.0)
    fine = ndimage.zoom(clutter((300, 300), seed=4).astype(np.float32), 4, order=1)  # 3 km at 2.5 m
    unscaled = targets_from_hits(fine, *cfar_hits(fine, pixel_size_m=2.5), pixel_size_m=2.5)
    assert len(unscaled) > 3 and len(detect_sar(fine, pixel_size_m=2.5)) < len(unscaled) / 3


def test_a_bright_ships_length_is_measured_on_its_strong_returns() -> None:
    """A 100 m hull blurred by its resolution cell: its hits spread with its brightness (147 m measured at 25 dB
    over the sea on simulated GRDs); measured on the hits at least half its strong returns, it is nearer 100 m."""
    img = clutter((400, 400), seed=6).astype(np.float64)
    hull = np.zeros_like(img)
    hull[150:160, 199:201] = 40 * np.median(img)  # 100 m x 20 m, amplitude 32 dB over the sea's median
    img = np.clip(img + ndimage.gaussian_filter(hull, 1.2), 0, 65535).astype(np.uint16)
    (d,) = detect_sar(img, pixel_size_m=10.0)
    rows, cols = cfar_hits_reference(img, pixel_size_m=10.0)
    from routewatch.detect.measure import measure_pixels

    near = np.hypot(rows - 155, cols - 200) < 15
    assert measure_pixels(rows[near], cols[near], 10.0).length_m > 125  # every hit: the blur counts
    assert 90 <= d.length_m <= 122
    # a wider blur, brighter: the same 100 m (a core on 0.6 of the median had kept the blur: 140 m)
    img = clutter((400, 400), seed=6).astype(np.float64)
    hull = np.zeros_like(img)
    hull[150:160, 199:201] = 160 * np.median(img)
    img = np.clip(img + ndimage.gaussian_filter(hull, 2.0), 0, 65535).astype(np.uint16)
    (d,) = [d for d in detect_sar(img, pixel_size_m=10.0) if np.hypot(d.row - 155, d.col - 200) < 10]
    assert d.length_m <= 125
    # a bright bridge (a tenth of the hull, five times brighter) does not leave the rest of the hull out: measured
    # on the returns above a high percentile, a 200 m hull had come out 30 m long and turned across
    img = clutter((400, 400), seed=6).astype(np.float64)
    hull = np.zeros_like(img)
    hull[150:170, 199:202] = 8 * np.median(img)  # 200 m x 30 m at about 18 dB over the sea
    hull[167:170, 199:202] = 40 * np.median(img)  # a 30 m bridge at its stern, five times brighter
    img = np.clip(img + ndimage.gaussian_filter(hull, 0.5), 0, 65535).astype(np.uint16)
    (d,) = detect_sar(img, pixel_size_m=10.0)
    assert d.length_m > 180 and min(d.heading_deg % 180, 180 - d.heading_deg % 180) < 10


def test_a_ship_half_hidden_by_a_tanker_is_found_on_the_fast_path_as_on_the_reference() -> None:
    """A 150 m ship at 24 dB 1 km from a 300 m tanker at 35 dB, on K clutter: the first pass sees it only as
    scattered hits (no target). The fast path had censored those hits as a loud target (its first pass was
    grouped without the speckle and size rules) and lost the ship the reference found (11 of 20 against 20)."""
    found = {"fast": 0, "reference": 0, "uncensored": 0}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        inten = (0.02 * rng.gamma(2.0, 0.5, (700, 700)) * rng.gamma(2.0, 0.5, (700, 700))).astype(np.float32)
        inten[343:358, 299:302] = 0.02 * 10 ** 2.4 * rng.gamma(4.4, 1 / 4.4, (15, 3))  # 150 m x 25 m, 24 dB
        inten[348:353, 385:415] = 0.02 * 10 ** 3.5 * rng.gamma(4.4, 1 / 4.4, (5, 30))  # 300 m tanker, 35 dB
        amp, sea = np.sqrt(inten), np.ones((700, 700), bool)
        for name, kw in (("fast", {"water": sea}), ("reference", {"water": sea, "reference": True}),
                         ("uncensored", {})):
            found[name] += any(np.hypot(d.row - 350, d.col - 300) < 6
                               for d in detect_sar(amp, pixel_size_m=10.0, **kw))
    assert found["fast"] == found["reference"] == 6 and found["uncensored"] < 6, found
    # without a water mask nothing is censored, also where NaN no-data makes a mask of the valid pixels (it had
    # switched censoring on: a few NaN columns changed what was found)
    holed = amp.copy()
    holed[:, :3] = np.nan
    assert [(round(d.row), round(d.col)) for d in detect_sar(holed, pixel_size_m=10.0)] == \
        [(round(d.row), round(d.col)) for d in detect_sar(amp, pixel_size_m=10.0)]


def _hulls_scene(hulls: list[tuple[float, float, float, float, float]], bright: float, seed: int) -> np.ndarray:
    """Blurred hulls (row, col, length px, beam px, heading deg) at ``bright`` times the median of K clutter."""
    from routewatch.simulate.scenes import _hull

    img = clutter((400, 400), seed=seed).astype(np.float64)
    cover = np.zeros_like(img)
    for r, c, length, beam, heading in hulls:
        cover = np.maximum(cover, _hull(img.shape, r, c, length, beam, heading))
    return np.clip(img + ndimage.gaussian_filter(cover * bright * np.median(img), 1.0), 0, 65535).astype(np.uint16)


def _ships_found(img: np.ndarray, near: tuple[float, float]) -> list:
    dets = detect_sar(img, pixel_size_m=10.0, water=np.ones(img.shape, bool))
    return [d for d in dets if np.hypot(d.row - near[0], d.col - near[1]) < 15]


@pytest.mark.parametrize("bright", [8.0, 20.0, 60.0])
def test_ships_moored_side_by_side_are_two_targets_and_a_wide_hull_stays_one(bright: float) -> None:
    """Two 120 x 20 m hulls 60 m apart, blurred by their resolution cells, had always merged into one target (a
    berth's nested ships counted once); cut where the return across them falls to the sea between the hulls,
    they are two, each measured as one hull. A single hull as wide as the pair (60 m beam, a VLCC's) is not cut,
    nor a 45 m beam turned 45 degrees."""
    from routewatch.detect.sar import split_side_by_side

    for seed in range(4):
        pair = _ships_found(_hulls_scene([(200, 197, 12, 2, 0), (200, 203, 12, 2, 0)], bright, seed), (200, 200))
        assert len(pair) == 2, (seed, pair)
        assert sorted(round(d.col) for d in pair) == [197, 203] or all(
            abs(d.col - c) <= 1 for d, c in zip(sorted(pair, key=lambda d: d.col), (197, 203), strict=True))
        assert all(90 <= d.length_m <= 160 and (d.heading_deg < 15 or d.heading_deg > 165) for d in pair)
        for hull in [(200, 200, 30, 6, 0), (200, 200, 25, 4.5, 45)]:
            assert len(_ships_found(_hulls_scene([hull], bright, seed), (200, 200))) == 1
    # without the cut, the pair is one target (what the detector gave before)
    img = _hulls_scene([(200, 197, 12, 2, 0), (200, 203, 12, 2, 0)], bright, 0)
    rows, cols = cfar_hits(img, pixel_size_m=10.0, water=np.ones(img.shape, bool))
    r, c, labels = group_hits(rows, cols, CfarParams())
    near = np.hypot(r - 200, c - 200) < 15
    assert len(set(labels[near].tolist())) == 1
    assert len(split_side_by_side(img, r[near], c[near], clutter=float(np.median(img)), pixel_size_m=10.0)) == 2


def test_three_ships_in_a_row_are_three_and_a_hull_is_not_cut_from_its_bridge() -> None:
    """Three hulls abreast (wider than long) are cut across their other axis, each piece again; a 200 m hull with
    a bright bridge at one end is one ship (a cut across it would leave pieces that do not lie along the cut)."""
    row = [(200, 194, 12, 2, 0), (200, 200, 12, 2, 0), (200, 206, 12, 2, 0)]
    assert len(_ships_found(_hulls_scene(row, 8.0, 1), (200, 200))) == 3
    img = clutter((400, 400), seed=6).astype(np.float64)
    hull = np.zeros_like(img)
    hull[190:210, 199:203] = 8 * np.median(img)
    hull[206:210, 199:203] = 40 * np.median(img)
    img = np.clip(img + ndimage.gaussian_filter(hull, 1.0), 0, 65535).astype(np.uint16)
    assert len(_ships_found(img, (200, 200))) == 1


def test_grids_fine_hulls_and_bands_across_hulls_are_not_cut() -> None:
    """A grid of small returns (fish-farm cages 20 m across, 50-60 m apart) is no row of hulls (each row had been
    a 150-280 m "ship"). On 2.5 m pixels a 40 m beam hull with bright sides and a dim deck is one ship, not its two
    sides (200 x 10 m each: too slender for a hull). And two tankers abreast with a bright bow, manifold and
    bridge are never cut across into the bands those make (three 120 m "ships" turned 90 degrees); four hulls
    abreast or more, wider than long, stay one target (a cut across the axis is what made the bands)."""
    for seed in range(3):
        img = clutter((400, 400), seed=seed).astype(np.float64)
        sea = np.median(img)
        hull = np.zeros_like(img)
        for c in (196, 204):
            hull[188:213, c - 2:c + 2] = 3 * sea
            hull[188:192, c - 2:c + 2] = 20 * sea
            hull[199:202, c - 2:c + 2] = 30 * sea  # the manifold
            hull[208:213, c - 2:c + 2] = 40 * sea
        img = np.clip(img + ndimage.gaussian_filter(hull, 1.0), 0, 65535).astype(np.uint16)
        found = _ships_found(img, (200, 200))
        assert 1 <= len(found) <= 2 and all(d.length_m >= 200 for d in found), (seed, found)
    row = [(200, 200 + 6 * (k - 1.5), 12, 2, 0) for k in range(4)]
    assert len(_ships_found(_hulls_scene(row, 8.0, 2), (200, 200))) == 1
    for n, gap in ((3, 5), (5, 5), (6, 6)):
        img = clutter((400, 400), seed=3).astype(np.float64)
        sea = np.median(img)
        for i in range(n):
            for j in range(n):
                r, c = 200 + gap * (i - n // 2), 200 + gap * (j - n // 2)
                img[r - 1:r + 1, c - 1:c + 1] = 30 * sea
        img = np.clip(ndimage.gaussian_filter(img, 0.7), 0, 65535).astype(np.uint16)
        found = detect_sar(img, pixel_size_m=10.0, water=np.ones(img.shape, bool))
        assert len([d for d in found if np.hypot(d.row - 200, d.col - 200) < gap * n]) <= 1, (n, gap)
    img = clutter((800, 800), seed=1).astype(np.float64)
    sea = np.median(img)
    hull = np.zeros_like(img)
    hull[320:400, 392:408] = 3 * sea  # 200 x 40 m at 2.5 m
    hull[320:400, 392:394] = hull[320:400, 406:408] = 20 * sea
    img = np.clip(img + ndimage.gaussian_filter(hull, 1.0), 0, 65535).astype(np.uint16)
    found = [d for d in detect_sar(img, pixel_size_m=2.5, water=np.ones(img.shape, bool))
             if abs(d.row - 360) < 40 and abs(d.col - 400) < 16]
    assert len(found) == 1 and found[0].width_m > 25


def test_tankers_with_a_bright_bow_and_bridge_side_by_side_are_two() -> None:
    """Two 250 x 44 m tankers 80 m apart, deck 3-4 times the sea, bow and bridge 20-60 times: a rule that took the
    dim deck between bow and bridge for water (a grid's sign) had kept them one 282 m target."""
    for deck, bow, bridge in ((3.0, 20.0, 40.0), (4.0, 40.0, 60.0)):
        for seed in range(3):
            img = clutter((400, 400), seed=seed).astype(np.float64)
            sea = np.median(img)
            hull = np.zeros_like(img)
            for c in (196, 204):  # 25 rows (250 m) by 4 columns (44 m with the blur), 80 m between centres
                hull[188:213, c - 2:c + 2] = deck * sea
                hull[188:192, c - 2:c + 2] = bow * sea
                hull[208:213, c - 2:c + 2] = bridge * sea
            img = np.clip(img + ndimage.gaussian_filter(hull, 1.0), 0, 65535).astype(np.uint16)
            found = _ships_found(img, (200, 200))
            assert len(found) == 2 and all(200 <= d.length_m <= 320 for d in found), (deck, seed, found)
