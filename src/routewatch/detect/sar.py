"""SAR ship detection: two-parameter ring-window CFAR inside the water mask, clustering and size discrimination.

Clutter model: sea backscatter is described locally by its mean and standard deviation measured in a ring
(outside a guard zone that keeps the ship, its sidelobes and ships moored beside it out of the estimate), over
water pixels only when a water mask is given. A pixel is a target when it exceeds ``mean + k * std``. Under
Gaussian clutter ``k = 4`` would give a false-alarm rate of 3e-5 per pixel; real sea clutter (K-distributed
speckle, heavier tails) has more. The single-pixel test is therefore followed by grouping (:func:`group_hits`):
hits form 8-connected blobs, blobs within ``cluster_gap_px`` of each other form one target (a hull and its
superstructure often return as separate blobs), and a target needs ``min_pixels`` hits, which independent speckle
spikes almost never give. The defaults (``k = 4``, guard 800 m, background 1200 m, blobs of 5 hits or more,
gap 3, 12 hits) were chosen leave-one-chip-out on the shared SAR chips inside their derived water masks, among the settings that
give at most one false target per 1024 x 1024 image of single-look K clutter and still see ships on simulated
10 m Sentinel-1 ports (``python -m routewatch.detect.train --sar``; docs/evaluation.md).
Clusters are kept when their length lies between ``min_length_m`` and ``max_length_m``. Keep land out with a
water mask (``water``): the user's polygons, or :func:`routewatch.detect.water.sar_water`; without one, bright
land in the ring hides the ships of a narrow harbour.

Two implementations share the clustering and measurement:

* :func:`cfar_hits` (fast path, used by :func:`detect_sar`): background statistics on a decimated grid (every
  4th pixel), summed into 16 x 16-pixel blocks, ring sums from integral images over the block grid. Pixels are
  screened in the image's own dtype against a generous bound (``0.8 k``, lowest over the 3 x 3 neighbouring
  blocks); only the few that pass, in groups that could still make a target, get the exact full-resolution ring
  test (:func:`ring_threshold_at`, prefix sums of small neighbourhoods). On the benchmark scene the fast path
  keeps every hit the reference keeps; forced onto the 256-pixel shared chips, where the 1.2 km ring always
  crosses the image edge, it misses one hit in 4,400 (a screen at ``0.7 k`` misses none but takes 2.5 times as
  long on a scene), and finds the same targets (a test checks the F1). Images of at most four window areas and
  512 x 512 pixels (chips) go to the reference, which is cheaper there. Tiles run on threads (numpy releases
  the GIL), and the full image is never converted to float.
* :func:`cfar_hits_reference`: the plain full-resolution ring window with ``scipy.ndimage.uniform_filter``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from routewatch.detect.base import Detection
from routewatch.detect.measure import Shape, measure_pixels

BLOCK = 16  # pixels per block side for background statistics
STEP = 4  # decimation of the background sample inside a block
STRIP_BLOCKS = 64  # block rows summed at a time (1,024 image rows)
SMALL_IMAGE_PX = 512 * 512  # above this the block path wins even when the window covers much of the image
PRESCREEN = 0.8  # the block-level screen uses 0.8 k: generous, so it passes (nearly) every pixel the exact test keeps


MEASURE_FRACTION = 0.5  # a target is measured on its hits of at least this share of its 90th-percentile value
MEASURE_MIN_SHARE = 0.3  # ...when they are at least this share of its hits (else on every hit)
REFERENCE_PIXEL_M = 10.0  # the pixel size the grouping rules (pixel counts) were chosen at


@dataclass(frozen=True)
class CfarParams:
    """CFAR settings in ground metres, so the same settings hold for 10 m Sentinel-1 and 1 m commercial SAR."""

    k: float = 4.0
    guard_m: float = 800.0  # half-size of the guard square
    background_m: float = 1200.0  # half-size of the outer background square
    cluster_gap_px: int = 3  # blobs closer than this (Chebyshev distance) belong to the same target
    min_pixels: int = 12  # hits a target needs in all
    blob_pixels: int = 5  # 8-connected blobs of fewer hits are speckle and are dropped before grouping
    min_length_m: float = 20.0
    max_length_m: float = 500.0

    def at(self, pixel_size_m: float) -> CfarParams:
        """The settings for pixels of ``pixel_size_m``: the grouping rules count pixels, and were chosen at 10 m.
        On finer pixels the gap holds the same ground distance and the counts grow in proportion to the pixels'
        side, not their area: a resolved ship returns from its scatterers, not from its whole deck (counts by
        area found no ship on simulated 1 m SAR). On a scene resampled to 5 m and 2.5 m, correlated speckle had
        made 64 and 1,180 false targets per 1,000 km2 where 10 m made none (now 0 and 60), and a 1 m ship's
        scatterers two or three targets (now one each). Coarser pixels keep the 10 m counts (fewer would let
        speckle through)."""
        f = REFERENCE_PIXEL_M / pixel_size_m
        if f <= 1.0:
            return self
        return dataclasses.replace(self, cluster_gap_px=max(self.cluster_gap_px, round(self.cluster_gap_px * f)),
                                   min_pixels=max(self.min_pixels, round(self.min_pixels * f)),
                                   blob_pixels=max(self.blob_pixels, round(self.blob_pixels * f)))

    def window_px(self, pixel_size_m: float) -> tuple[int, int]:
        """Guard and background half-sizes in pixels."""
        g = max(2, round(self.guard_m / pixel_size_m))
        b = max(g + 2, round(self.background_m / pixel_size_m))
        return g, b


def _above(x: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """``x > thr`` with a relative tolerance, so running-sum rounding (a flat zero background whose mean comes out
    as -1e-13) does not turn flat pixels into targets."""
    return x > thr + 1e-7 * np.maximum(1.0, np.abs(thr))


def _ring_stats(count: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clutter model's mean and standard deviation from a ring's pixel count, sum and sum of squares (an empty
    ring counts as one pixel; rounding never makes the variance negative)."""
    n = np.maximum(count, 1.0)
    mean = total / n
    return mean, np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0))


def _as_water(water: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if water is None:
        return None
    w = np.asarray(water, dtype=bool)
    if w.shape != shape:
        raise ValueError(f"water mask shape {w.shape} differs from image shape {shape}")
    # all water (open sea, as the derived mask gives it): the same as no mask, without its weights in every sum
    return None if w.all() else w


def cfar_hits_reference(
    image: np.ndarray, *, pixel_size_m: float, water: np.ndarray | None = None, params: CfarParams = CfarParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution ring-window CFAR: (rows, cols) of pixels above ``mean + k std`` of their ring."""
    x = np.asarray(image, dtype=np.float64)
    w = _as_water(water, x.shape)
    wt = np.ones_like(x) if w is None else w.astype(np.float64)
    g, b = params.window_px(pixel_size_m)
    sums = []
    for arr in (wt, x * wt, x * x * wt):
        outer = ndimage.uniform_filter(arr, size=2 * b + 1, mode="reflect") * (2 * b + 1) ** 2
        inner = ndimage.uniform_filter(arr, size=2 * g + 1, mode="reflect") * (2 * g + 1) ** 2
        sums.append(outer - inner)
    mean, std = _ring_stats(*sums)
    hit = _above(x, mean + params.k * std)
    if w is not None:
        hit &= w
    return np.nonzero(hit)


def _block_sums(image: np.ndarray, water: np.ndarray | None, threads: int = 2) -> list[np.ndarray]:
    """Count, sum and sum of squares of the decimated background sample in each block (float64 block grids).

    Strips of block rows are summed in ``threads`` threads (numpy lets go of the GIL), each over its own small
    sample: the whole sample and its square, written at once, had cost a scene 250 MB and a fifth of its time.
    """
    h, w = image.shape
    nbr, nbc = -(-h // BLOCK), -(-w // BLOCK)
    spb = BLOCK // STEP
    out = [np.empty((nbr, nbc)) for _ in range(3)]

    def reduce(a: np.ndarray) -> np.ndarray:
        # Row-wise then column-wise sums keep every reduction contiguous (much faster than axis=(1, 3)).
        return a.reshape(-1, spb, a.shape[1]).sum(1).reshape(-1, nbc, spb).sum(2)

    def part(b0: int) -> None:
        b1 = min(nbr, b0 + STRIP_BLOCKS)
        rows = slice(b0 * BLOCK + STEP // 2, b1 * BLOCK, STEP)
        sample = image[rows, STEP // 2 :: STEP].astype(np.float32)
        wt = None if water is None else water[rows, STEP // 2 :: STEP].astype(np.float32)
        pad = ((0, (b1 - b0) * spb - sample.shape[0]), (0, nbc * spb - sample.shape[1]))
        if wt is None and (pad[0][1] or pad[1][1]):
            wt = np.ones(sample.shape, np.float32)
        if pad[0][1] or pad[1][1]:
            sample = np.pad(sample, pad)
            wt = np.pad(wt, pad)  # type: ignore[arg-type]
        if wt is None:
            out[0][b0:b1] = float(spb * spb)
            out[1][b0:b1] = reduce(sample)
            sample *= sample
            out[2][b0:b1] = reduce(sample)
            return
        sample *= wt
        out[0][b0:b1] = reduce(wt)
        out[1][b0:b1] = reduce(sample)
        sample *= sample  # (sample x wt) squared is sample squared x wt: the weights are 0 or 1
        out[2][b0:b1] = reduce(sample)

    starts = range(0, nbr, STRIP_BLOCKS)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, starts))
    else:
        for b0 in starts:
            part(b0)
    return out


def _block_thresholds(
    image: np.ndarray, water: np.ndarray | None, g: int, b: int, k: float, threads: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold at each block centre, and its lower bound over the 3 x 3 block neighbourhood."""
    sums = _block_sums(image, water, threads)
    # Guard of whole blocks at least as wide as the pixel guard, so a target never sits in its own screen's
    # background (that would raise the screen above the exact threshold).
    gb = max(1, math.ceil(g / BLOCK))
    bb = max(gb + 1, math.ceil(b / BLOCK))
    ring = []
    for a in sums:
        p = np.pad(a, bb, mode="reflect") if min(a.shape) > bb else np.pad(a, bb, mode="edge")
        ii = np.zeros((p.shape[0] + 1, p.shape[1] + 1))
        ii[1:, 1:] = p
        np.cumsum(ii, 0, out=ii)  # in place over the whole grid: twice as quick as into a view of it
        np.cumsum(ii, 1, out=ii)
        h, w = a.shape

        def box(r: int, ii: np.ndarray = ii, h: int = h, w: int = w) -> np.ndarray:
            o = bb - r  # offset of this box's corner inside the padded grid
            s = 2 * r + 1
            return (ii[o + s : o + s + h, o + s : o + s + w] - ii[o : o + h, o + s : o + s + w]
                    - ii[o + s : o + s + h, o : o + w] + ii[o : o + h, o : o + w])

        ring.append(box(bb) - box(gb))
    mean, std = _ring_stats(*ring)
    thr = (mean + k * std).astype(np.float32)
    low = ndimage.minimum_filter(mean + PRESCREEN * k * std, size=3, mode="nearest").astype(np.float32)
    return thr, low


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric indices (scipy's ``reflect`` mode), mirrored as often as needed (a window wider than
    the image reflects more than once)."""
    m = np.mod(idx, 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def _box(pre: np.ndarray, top: np.ndarray, bottom: np.ndarray, c: np.ndarray, q: int) -> np.ndarray:
    """Sums of the boxes spanning prefix rows ``top`` to ``bottom`` and columns ``c - q`` to ``c + q``, from prefix
    sums with a leading zero column."""
    return pre[bottom, c + q + 1] - pre[top, c + q + 1] - pre[bottom, c - q] + pre[top, c - q]


def ring_threshold_at(
    image: np.ndarray, water: np.ndarray | None, rows: np.ndarray, cols: np.ndarray, g: int, b: int, k: float,
    cell: int = 32,
) -> np.ndarray:
    """Exact full-resolution ring threshold ``mean + k std`` at the given pixels only.

    Candidates are grouped by ``cell`` x ``cell`` squares; each square reads its own neighbourhood once. Box sums
    need the two-dimensional prefix sum only on the rows where a box starts or ends, so the neighbourhood is
    summed between those rows (one pass, ``np.add.reduceat``) and the running sum along the columns is taken on
    those few rows alone: the cost grows with the number of candidate squares and their neighbourhood's area,
    never with the image size, and no full prefix-sum image is written.
    """
    h, w = image.shape
    out = np.empty(rows.size, np.float64)
    key = (rows // cell) * (w // cell + 1) + cols // cell
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    if (bounds.size + 1) * (cell + 2 * b + 1) ** 2 > SAT_WORTH * h * w and h * w <= SAT_MAX_PX:
        # the squares' neighbourhoods would read the image many times over (a window wider than the image, as at
        # metre pixels): one summed-area table of the whole image answers every box at once
        return _ring_thresholds_by_table(image, water, rows, cols, g, b, k)
    for idx in np.split(order, bounds):
        r, c = rows[idx], cols[idx]
        r0, c0 = int(r.min()) - b, int(c.min()) - b
        r1, c1 = int(r.max()) + b + 1, int(c.max()) + b + 1
        if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:  # inside the image: a plain slice (fancy indexing of the
            near: tuple = (slice(r0, r1), slice(c0, c1))  # neighbourhood had taken a third of this function's time)
        else:
            near = np.ix_(_reflect(np.arange(r0, r1), h), _reflect(np.arange(c0, c1), w))
        patch = image[near].astype(np.float64)
        if water is None:
            layers = [patch, patch * patch]
        else:
            wt = water[near].astype(np.float64)
            pw = patch * wt
            layers = [wt, pw, pw * patch]
        lr, lc = r - r0, c - c0
        # Rows where a box edge lies (prefix-sum row v = sum of patch rows < v), 0 first, patch height last.
        edges = np.unique(np.concatenate([[0], lr - b, lr + b + 1, lr - g, lr + g + 1]))
        starts = edges[edges < patch.shape[0]]
        at = np.searchsorted(edges, [lr - b, lr + b + 1, lr - g, lr + g + 1])
        sums = []
        for a in layers:
            seg = np.add.reduceat(a, starts, axis=0)  # rows [starts[i], starts[i + 1]) summed
            pre = np.zeros((edges.size, a.shape[1] + 1))  # edges = starts and the patch height
            np.cumsum(seg, axis=0, out=pre[1:, 1:])  # prefix rows at edges[1:]
            np.cumsum(pre[:, 1:], axis=1, out=pre[:, 1:])
            sums.append(_box(pre, at[0], at[1], lc, b) - _box(pre, at[2], at[3], lc, g))
        if water is None:
            sums.insert(0, np.full(lr.size, float((2 * b + 1) ** 2 - (2 * g + 1) ** 2)))
        mean, std = _ring_stats(*sums)
        out[idx] = mean + k * std
    return out


SAT_WORTH = 4  # a summed-area table costs about this many passes over the image...
SAT_MAX_PX = 64_000_000  # ...and 24-32 bytes a pixel (the table, a layer, the image as float): up to 64 Mpx, 2 GB


def _ring_thresholds_by_table(image: np.ndarray, water: np.ndarray | None, rows: np.ndarray, cols: np.ndarray,
                              g: int, b: int, k: float) -> np.ndarray:
    """:func:`ring_threshold_at` from one summed-area table of the image.

    scipy's ``reflect`` extension repeats the image and its mirror images with a period of twice its size, so a box
    sum over the extension, however far it reaches past the edges, is a sum of whole periods (counted by
    multiplication) and of parts of one period, each read from the image's own table (a mirrored part is a whole
    run of the image less its reflection). Exact like the squares' path; its cost grows with the image, not with
    the window.
    """
    h, w = image.shape
    r, c = rows.astype(np.int64), cols.astype(np.int64)
    table = np.zeros((h + 1, w + 1))

    def fold(x: np.ndarray, n: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Whole periods before ``x`` on an axis of ``n``, and the (weight, table index) pairs that sum the rest:
        the first ``x mod 2n`` of a period is the image's first rows, or all of them and the mirrored rest."""
        q, rest = np.divmod(x, 2 * n)
        inside = rest <= n
        return q, [(np.where(inside, 1.0, 2.0), np.where(inside, rest, n)),
                   (np.where(inside, 0.0, -1.0), np.where(inside, 0, 2 * n - rest))]

    def box_sums(layer: np.ndarray) -> np.ndarray:
        table[1:, 1:] = layer
        np.cumsum(table, 0, out=table)
        np.cumsum(table, 1, out=table)
        period = 4.0 * table[h, w]

        def upto(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # the sum over the extension's [0, x) x [0, y)
            qx, xs = fold(x, h)
            qy, ys = fold(y, w)
            part = sum(a * b_ * table[i, j] for a, i in xs for b_, j in ys)
            along_x = sum(a * 2.0 * table[i, w] for a, i in xs)  # the rest of the rows, every column of a period
            along_y = sum(b_ * 2.0 * table[h, j] for b_, j in ys)
            return qx * qy * period + qx * along_y + qy * along_x + part

        def box(q: int) -> np.ndarray:
            return upto(r + q + 1, c + q + 1) - upto(r - q, c + q + 1) - upto(r + q + 1, c - q) + upto(r - q, c - q)

        return box(b) - box(g)

    x = np.asarray(image, dtype=np.float64)
    if water is None:
        sums = [np.full(r.size, float((2 * b + 1) ** 2 - (2 * g + 1) ** 2))]
        layers: list[Callable[[], np.ndarray]] = [lambda: x, lambda: x * x]
    else:
        wt = np.asarray(water, dtype=np.float64)
        sums, layers = [], [lambda: wt, lambda: x * wt, lambda: x * x * wt]
    sums += [box_sums(layer()) for layer in layers]  # one layer made at a time
    mean, std = _ring_stats(*sums)
    return mean + k * std


def cfar_hits(
    image: np.ndarray,
    *,
    pixel_size_m: float,
    water: np.ndarray | None = None,
    params: CfarParams = CfarParams(),
    tile_rows: int = 1024,
    threads: int = 2,
    small_image_reference: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Fast tiled CFAR: block-level screen, then the exact ring test on the candidates that could form a target.

    A small image not much larger than the window (at most four window areas and ``SMALL_IMAGE_PX`` pixels) goes
    to the reference filters instead, which are cheaper there (``small_image_reference=False`` forces the block
    path, for tests).

    Returns the hit pixels that belong to clusters of at least ``params.min_pixels`` candidates, so isolated
    single-pixel hits of the reference are missing here; the targets (:func:`targets_from_hits`) are the same.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"SAR image must be 2-D, got shape {img.shape}")
    w = _as_water(water, img.shape)
    g, b = params.window_px(pixel_size_m)
    if img.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    if small_image_reference and img.size <= min(4 * (2 * b + 1) ** 2, SMALL_IMAGE_PX):
        # The window spans the image (a small chip, or metre pixels): the whole-image filters of the reference
        # are cheaper than exact tests whose neighbourhoods are larger than the image.
        rows, cols, _ = group_hits(*cfar_hits_reference(img, pixel_size_m=pixel_size_m, water=w, params=params), params)
        return rows, cols
    _, low = _block_thresholds(img, w, g, b, params.k, threads)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        low_t = np.clip(np.floor(low), info.min, info.max).astype(img.dtype)
    else:
        low_t = low.astype(img.dtype)
    h, wd = img.shape
    tile_rows = max(BLOCK, tile_rows - tile_rows % BLOCK)

    def row_candidates(r: int) -> np.ndarray | None:
        """One row's candidates (a strip's neighbour across its edge); None outside the image."""
        if not 0 <= r < h:
            return None
        return img[r] > np.repeat(low_t[r // BLOCK], BLOCK)[:wd]

    def run(r0: int) -> tuple[np.ndarray, np.ndarray]:
        r1 = min(h, r0 + tile_rows)
        strip = img[r0:r1]
        lt = np.repeat(low_t[r0 // BLOCK : -(-r1 // BLOCK)], BLOCK, axis=1)[:, :wd]
        nfull = (r1 - r0) // BLOCK
        cand = np.empty(strip.shape, bool)
        if nfull:
            np.greater(strip[: nfull * BLOCK].reshape(nfull, BLOCK, wd), lt[:nfull, None, :],
                       out=cand[: nfull * BLOCK].reshape(nfull, BLOCK, wd))
        if nfull * BLOCK < r1 - r0:
            np.greater(strip[nfull * BLOCK :], lt[nfull:nfull + 1], out=cand[nfull * BLOCK :])
        if params.blob_pixels > 1:  # most candidates are lone speckle: gone here, in the tile's threads
            cand = with_neighbour(cand, row_candidates(r0 - 1), row_candidates(r1))
        flat = np.flatnonzero(cand)  # far faster than 2-D nonzero on a sparse mask
        rr, cc = np.divmod(flat, wd)
        rr = rr + r0
        if w is not None and rr.size:
            keep = w[rr, cc]
            rr, cc = rr[keep], cc[keep]
        return rr, cc

    starts = list(range(0, h, tile_rows))
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(s) for s in starts]
    rows = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.intp)
    cols = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.intp)
    # Candidates in clusters too small to become a target cannot yield one after the exact test either (the exact
    # hits are a subset, so their clusters are subsets): drop them before the costly exact test.
    rows, cols, _ = group_hits(rows, cols, params)
    if rows.size == 0:
        return rows, cols
    keep = _above(img[rows, cols].astype(np.float64), ring_threshold_at(img, w, rows, cols, g, b, params.k))
    return rows[keep], cols[keep]


def with_neighbour(cand: np.ndarray, above: np.ndarray | None = None, below: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``cand`` (2-D bool) with at least one of their eight neighbours in ``cand``; ``above`` and
    ``below`` are the rows just outside it (None at the image's edge).

    A lone pixel can be no part of a blob of two or more, whatever the exact test then keeps (its hits are a
    subset of the candidates): dropping lone candidates before the sparse grouping leaves every target as it was,
    and on sea clutter most candidates are lone speckle (the grouping of a scene's millions of candidates had
    taken a quarter of its time).
    """
    near = np.empty_like(cand)  # a neighbour beside it, then above or below too (never the pixel itself)
    near[:, 0] = False
    near[:, 1:] = cand[:, :-1]
    near[:, :-1] |= cand[:, 1:]
    across = near | cand  # the pixel or one beside it, along its row
    near[1:] |= across[:-1]
    near[:-1] |= across[1:]
    for edge, row in ((0, above), (-1, below)):
        if row is not None:
            spread = row.copy()
            spread[1:] |= row[:-1]
            spread[:-1] |= row[1:]
            near[edge] |= spread
    near &= cand
    return near


CENSOR_M = 20.0  # around a target's hits, the blur of its resolution cell: censored with it
CENSOR_ENERGY = 0.25  # a target is censored when its echo energy is this share of a ring's clutter energy
CENSOR_OPEN_WATER = 0.95  # censoring only where the crop around the targets is open water (see censored_hits)


def censored_hits(
    image: np.ndarray, hits: Callable[..., tuple[np.ndarray, np.ndarray]], *, pixel_size_m: float,
    water: np.ndarray | None = None, params: CfarParams = CfarParams(),
    crop_hits: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None, censor: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """CFAR hits with every target of a first pass censored out of the other pixels' background rings.

    The ring's mean and spread take no account of what lies in it: a 300 m tanker 1 km from a 100 m ship (inside
    its ring) raised the ship's threshold above it, and no ship 10 dB fainter than a neighbour in its ring was
    found (0 of 30 on simulated anchorages, 30 of 30 without the tankers). So ``hits`` (:func:`cfar_hits` or
    :func:`cfar_hits_reference`, called as ``hits(image, pixel_size_m=, water=, params=)``) runs once; the
    pixels of the targets it finds, and ``CENSOR_M`` around them, are taken out of the background, and the test
    runs again where a ring can hold them: on crops around each group of targets, reaching the ring's half-size
    beyond them (whose pixels' rings then lie inside the crop). A pixel is a hit when either pass says so (a
    target's own pixels are hits of the first). Away from targets nothing changes, and the cost grows with the
    area around targets, not with the image. ``crop_hits`` (default ``hits``) runs the crops; ``censor=False``
    (a ``water`` that only says where the data is, not where the sea is) runs the first pass alone.

    Only loud targets are censored (echo energy at least ``CENSOR_ENERGY`` of the ring's clutter energy: enough to
    about double its variance), and only where the water mask says the crop is open water (``CENSOR_OPEN_WATER``;
    without a mask nothing is censored): near a coast the
    censored statistics expose the bright fringe that any water mask leaves along the land (on the shared chips,
    censoring there added 9-22 false targets, all coastal; in open water it added none). Near a coast a loud ship
    can still hide a faint one in its ring.
    """
    img = np.asarray(image)
    r1, c1 = hits(img, pixel_size_m=pixel_size_m, water=water, params=params)
    if water is None or not censor:  # no water mask, so no telling open water from a coast: nothing is censored
        return r1, c1
    # only what makes targets is kept and censored (not speckle hits): the same for either ``hits``, whether it
    # returns the hits of targets only (the fast path) or every pixel over the threshold (the reference)
    r1, c1, labels = group_hits(r1, c1, params)
    rows, cols = r1, c1
    g, b = params.window_px(pixel_size_m)
    if rows.size:  # and only targets whose echo is a large share of a ring's: those raise its statistics much
        energy = np.bincount(labels, img[rows, cols].astype(np.float64) ** 2)
        ring = ((2 * b + 1) ** 2 - (2 * g + 1) ** 2) * clutter_level(img, water) ** 2
        loud = energy[labels] >= CENSOR_ENERGY * ring
        rows, cols = rows[loud], cols[loud]
    if rows.size == 0:
        return r1, c1
    h, w = img.shape
    wet = np.asarray(water, bool)
    d = max(1, round(CENSOR_M / pixel_size_m))
    reach = cell = b + d  # a pixel this far from every censored one has no censored pixel in its ring
    occupied = np.zeros((h // cell + 1, w // cell + 1), bool)
    occupied[rows // cell, cols // cell] = True
    regions = ndimage.label(ndimage.binary_dilation(occupied, np.ones((3, 3), bool)))[0]  # targets a ring apart
    region = regions[rows // cell, cols // cell]
    found_r, found_c = [r1], [c1]
    for k in np.unique(region):
        rr, cc = rows[region == k], cols[region == k]
        # inner: pixels whose ring can hold a censored pixel; crop: their rings too
        ir0, ir1 = max(0, int(rr.min()) - reach), min(h, int(rr.max()) + reach + 1)
        ic0, ic1 = max(0, int(cc.min()) - reach), min(w, int(cc.max()) + reach + 1)
        r0, r1_ = max(0, ir0 - b), min(h, ir1 + b)
        c0, c1_ = max(0, ic0 - b), min(w, ic1 + b)
        sub = img[r0:r1_, c0:c1_]
        if wet[r0:r1_, c0:c1_].mean() < CENSOR_OPEN_WATER:
            continue
        censor = np.zeros(sub.shape, bool)  # the hits and d pixels around them (set sparsely: a dilation of the
        off = np.arange(-d, d + 1)  # whole crop had cost more than the crop's CFAR)
        cr = np.clip((rr - r0)[:, None, None] + off[None, :, None], 0, sub.shape[0] - 1)
        cc_ = np.clip((cc - c0)[:, None, None] + off[None, None, :], 0, sub.shape[1] - 1)
        censor[np.broadcast_to(cr, (rr.size, off.size, off.size)), np.broadcast_to(cc_, (rr.size, off.size, off.size))] = True
        background = wet[r0:r1_, c0:c1_] & ~censor
        r2, c2 = (crop_hits or hits)(sub, pixel_size_m=pixel_size_m, water=background, params=params)
        r2, c2, _ = group_hits(r2, c2, params)
        r2, c2 = r2 + r0, c2 + c0
        keep = (r2 >= ir0) & (r2 < ir1) & (c2 >= ic0) & (c2 < ic1)
        found_r.append(r2[keep])
        found_c.append(c2[keep])
    key = np.unique(np.concatenate(found_r).astype(np.int64) * w + np.concatenate(found_c))
    return (key // w).astype(np.intp), (key % w).astype(np.intp)


def cluster_hits(rows: np.ndarray, cols: np.ndarray, gap: int = 2) -> np.ndarray:
    """Label sparse hit pixels into targets: hits within ``gap`` pixels (Chebyshev) share a label.

    Works on the hit list only (a few thousand points per scene), never on a full-size label image.
    """
    n = rows.size
    if n == 0:
        return np.empty(0, np.int64)
    r = rows.astype(np.int64)
    c = cols.astype(np.int64)
    offsets_n = gap + gap * (2 * gap + 1)
    area = (int(r.max() - r.min()) + 2 * gap + 1) * (int(c.max() - c.min()) + 2 * gap + 1)
    if area <= DENSE_MAX_PX and DENSE_WORTH * area < n * offsets_n:
        return _clusters_on_raster(r, c, gap)
    width = int(c.max()) + 2 * gap + 2
    key = r * width + c
    order = np.argsort(key)
    skey = key[order]
    src, dst = [], []
    offsets = [(0, dc) for dc in range(1, gap + 1)] + [(dr, dc) for dr in range(1, gap + 1) for dc in range(-gap, gap + 1)]
    for dr, dc in offsets:
        # the neighbours of the sorted keys, looked up in sorted order (cache-friendly: 6-9 times faster than
        # looking up the keys in the hits' own order, on two million scattered hits)
        nk = skey + (dr * width + dc)
        pos = np.minimum(np.searchsorted(skey, nk), n - 1)
        found = skey[pos] == nk
        src.append(order[found])
        dst.append(order[pos[found]])
    s = np.concatenate(src)
    d = np.concatenate(dst)
    if n < SMALL_GRAPH:
        return _components(n, s, d)
    graph = sparse.coo_matrix((np.ones(s.size, np.int8), (s, d)), shape=(n, n))
    _, labels = csgraph.connected_components(graph, directed=False)
    return labels


DENSE_WORTH = 8  # a raster of the hits' box costs about this many look-ups per pixel...
DENSE_MAX_PX = 16_000_000  # ...and is drawn only up to this size


def _clusters_on_raster(r: np.ndarray, c: np.ndarray, gap: int) -> np.ndarray:
    """:func:`cluster_hits` by drawing the hits on a raster of their box: a square of side ``gap`` at each hit
    (the same corner for all) touches another hit's square, 8-connected, exactly when the two hits are at most
    ``gap`` apart in rows and in columns, so the squares' connected regions are the clusters. Used where the
    neighbour look-ups would be many (a wide gap: 30 px at 1 m pixels is 1,860 offsets for each hit); labels
    numbered as csgraph numbers them (in the order of each cluster's first hit)."""
    r0, c0 = int(r.min()) - gap, int(c.min()) - gap
    raster = np.zeros((int(r.max()) - r0 + gap + 1, int(c.max()) - c0 + gap + 1), np.uint8)
    raster[r - r0, c - c0] = 1
    squares = ndimage.maximum_filter(raster, size=gap, mode="constant")
    regions, _ = ndimage.label(squares, structure=np.ones((3, 3), bool))
    at = regions[r - r0, c - c0]
    _, first, inverse = np.unique(at, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int32)  # the dtype csgraph gives
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse.ravel()]


SMALL_GRAPH = 5_000  # hits below this are labelled by :func:`_components`, the rest by scipy's csgraph (faster
# from about there: on dense blobs of 10,000-20,000 hits the union-find took 1.2-1.7 times as long)


def _components(n: int, s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by the edges ``s``-``d``, numbered as scipy's csgraph numbers
    them (in the order of each component's lowest node).

    Roots hooked onto the lower root of each edge, then paths halved until every node points at its root; a few
    rounds each. For the few hundred hits of a censoring crop, scipy's checks and conversions of the sparse
    graph (about a millisecond a call) had cost more than the labelling: a scene calls this hundreds of times.
    """
    parent = np.arange(n)
    while True:
        ps, pd = parent[s], parent[d]
        lo, hi = np.minimum(ps, pd), np.maximum(ps, pd)
        join = lo != hi
        if not join.any():
            break
        np.minimum.at(parent, hi[join], lo[join])
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return np.unique(parent, return_inverse=True)[1].astype(np.int32)  # the dtype csgraph gives


def group_hits(rows: np.ndarray, cols: np.ndarray, params: CfarParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits that form targets, and a target label each.

    Hits first form 8-connected blobs; blobs under ``blob_pixels`` are speckle and go. The remaining blobs within
    ``cluster_gap_px`` of each other are one target (a ship's hull and superstructure often return as separate
    bright blobs), and a target needs ``min_pixels`` hits. Dropping speckle before the wider grouping matters:
    grouping single hits over a gap of several pixels would chain random clutter hits into large false targets.
    """
    if params.blob_pixels > 1 and rows.size:
        blobs = cluster_hits(rows, cols, 1)
        keep = np.bincount(blobs)[blobs] >= params.blob_pixels
        rows, cols = rows[keep], cols[keep]
    labels = cluster_hits(rows, cols, params.cluster_gap_px)
    if labels.size:
        big = np.bincount(labels)[labels] >= params.min_pixels
        rows, cols, labels = rows[big], cols[big], labels[big]
    return rows, cols, labels


# Ships moored side by side (a berth's nested ships, a row at a quay) merge into one target: the blur of each hull
# and the grouping gap bridge the water between them. A target at least SPLIT_MIN_WIDTH_M wide is cut where the
# mean return across it falls to SPLIT_VALLEY of the weaker side's peak (both above the sea's level), when every
# piece is ship-shaped (SPLIT_ELONGATION to SPLIT_MAX_ELONGATION times as long as wide), lies along the cut (within
# SPLIT_PARALLEL_DEG) and is not broken along its length (:func:`_broken`): the pieces are hulls side by side, not
# a hull cut across, a hull and its bridge, or the rows of a grid. Cuts run along the target's axis; a target
# nearly as wide as long (SPLIT_SQUARE) is tried in every direction. Simulated 10 m pairs of 120 x 20 m hulls
# 50-80 m apart: one target each before, two now; single hulls of 30-60 m beam are never cut
# (tests/test_detect_sar.py). The valley was set so that the shared chips, whose finer pixels resolve a hull's own
# structure, lose nothing (0.5 had cut one hull in two there).
SPLIT_MIN_WIDTH_M = 35.0
SPLIT_VALLEY = 0.3
SPLIT_ELONGATION = 2.0
SPLIT_MAX_ELONGATION = 10.0  # ...and at most this: a hull's side alone on fine pixels is no hull (200 x 5 m at 1 m)
SPLIT_PARALLEL_DEG = 20.0
SPLIT_SQUARE = 1.6
SPLIT_DEPTH = 4  # at most 2 ** 4 hulls from one target


def true_runs(flags: np.ndarray) -> np.ndarray:
    """The lengths of the runs of True in a 1-D boolean array, in order."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags, np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def _turned(img: np.ndarray, y: np.ndarray, x: np.ndarray, ux: float, uy: float, pad: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A target's pixels (y, x) and the image around them (``pad`` pixels beyond) in its own frame: positions along
    the axis (ux, uy) (columns, rows) and across it, from the pixels' centre: (along, across, the crop's along, the
    crop's across, the crop)."""
    my, mx = float(y.mean()), float(x.mean())
    along = (x - mx) * ux + (y - my) * uy
    across = -(x - mx) * uy + (y - my) * ux
    r0, r1 = max(int(y.min()) - pad, 0), min(int(y.max()) + pad + 1, img.shape[0])
    c0, c1 = max(int(x.min()) - pad, 0), min(int(x.max()) + pad + 1, img.shape[1])
    gy, gx = np.mgrid[r0:r1, c0:c1]
    return along, across, (gx - mx) * ux + (gy - my) * uy, -(gx - mx) * uy + (gy - my) * ux, img[r0:r1, c0:c1]


def _valleys(img: np.ndarray, y: np.ndarray, x: np.ndarray, ux: float, uy: float, clutter: float
             ) -> list[tuple[float, float, np.ndarray, float]]:
    """Cuts parallel to the axis (ux, uy) (columns, rows) through the target's pixels (y, x): for each local minimum
    of the mean image value across the axis (over the middle 80 % of the target's extent along it, the sea's level
    taken off) that is at most SPLIT_VALLEY of the lower of the highest values either side, (depth, position across,
    every hit's position across, the cut's heading in degrees clockwise from image-up)."""
    along, across, g_along, g_across, crop = _turned(img, y, x, ux, uy, 2)
    a_min, a_max = float(along.min()), float(along.max())
    lo, hi = a_min + 0.1 * (a_max - a_min), a_max - 0.1 * (a_max - a_min)
    a0 = float(across.min())
    inside = (g_along >= lo) & (g_along <= hi) & (g_across >= a0 - 1) & (g_across <= across.max() + 1)
    bins = np.round(g_across[inside] - a0 + 1).astype(np.intp)
    n = np.bincount(bins)
    total = np.bincount(bins, crop[inside].astype(np.float64))
    profile = np.where(n > 0, total / np.maximum(n, 1), 0.0) - clutter
    if profile.size < 3:
        return []
    top = float(profile.max())
    left = np.maximum.accumulate(profile)[:-2]  # the highest value before each interior bin
    right = np.maximum.accumulate(profile[::-1])[::-1][2:]  # and after it
    low = np.minimum(left, right)
    mid, before, after = profile[1:-1], profile[:-2], profile[2:]
    # both sides must be hulls, well above the sea; the bin a local minimum at most SPLIT_VALLEY of the lower side
    cut = ((low >= 0.25 * top) & (low > 0.5 * clutter) & (mid <= SPLIT_VALLEY * low)
           & (mid <= before) & (mid <= after))
    heading = math.degrees(math.atan2(ux, -uy)) % 180.0
    return [(float(mid[v]) / float(low[v]), v + 1 + a0 - 1, across, heading) for v in np.flatnonzero(cut)]


def _hull_shape(img: np.ndarray, rr: np.ndarray, cc: np.ndarray, pixel_size_m: float) -> Shape:
    """A target's size, on its strong returns when they are a good share of its hits (else on every hit): every hit
    includes the blur of the resolution cell around the hull, the more the brighter the ship (a 100 m ship at 25 dB
    over the sea had measured 147 m, 129 m now); the share guard keeps a bright bridge, which alone can be that
    strong, from leaving the hull out (a 200 m hull had measured 30 m, turned across)."""
    vals = img[rr, cc].astype(np.float64)
    core = vals >= MEASURE_FRACTION * np.percentile(vals, 90)
    if core.sum() >= max(3, MEASURE_MIN_SHARE * rr.size):
        return measure_pixels(rr[core], cc[core], pixel_size_m)
    return measure_pixels(rr, cc, pixel_size_m)


def _hull_along(img: np.ndarray, rr: np.ndarray, cc: np.ndarray, pixel_size_m: float, params: CfarParams,
                heading: float) -> bool:
    """Whether a piece of a cut target is a hull lying along the cut."""
    if rr.size < params.min_pixels:
        return False
    shape = _hull_shape(img, rr, cc, pixel_size_m)
    off = abs(shape.heading_deg - heading) % 180.0
    return (max(params.min_length_m, SPLIT_ELONGATION * shape.width_m) <= shape.length_m
            <= SPLIT_MAX_ELONGATION * shape.width_m and min(off, 180.0 - off) <= SPLIT_PARALLEL_DEG)


SEA_GAP = 0.5  # a piece's mean return along its length down to this share of the sea's level above the sea: water
STRONG_RETURN = 0.5  # ...and a strong return along it one above this share of its strongest


def _broken(img: np.ndarray, rr: np.ndarray, cc: np.ndarray, heading: float, clutter: float,
            pixel_size_m: float) -> bool:
    """Whether a piece of a cut target is broken along its length: its mean return across it falls to the sea's
    (within SEA_GAP of its level) for a resolution cell (10 m) or more between returns, or it holds three strong
    returns or more, apart. A row of a grid of small returns (fish-farm cages, buoys)
    is; a hull is not, its deck however dim beside a bright bow and bridge (a rule that took a dim deck for sea
    had kept a pair of tankers one target; without any, each row of a 3 x 3 grid of cages had been a 150 m
    "ship")."""
    t = math.radians(heading)
    ux, uy = math.sin(t), -math.cos(t)  # along the piece, in (columns, rows)
    along, across, g_along, g_across, crop = _turned(img, rr.astype(np.float64), cc.astype(np.float64), ux, uy, 1)
    a0 = float(along.min())
    values = crop.astype(np.float64)

    def profile_along(inside: np.ndarray) -> np.ndarray:
        bins = np.round(g_along[inside] - a0).astype(np.intp)
        n = np.bincount(bins, minlength=round(float(along.max()) - a0) + 1)
        total = np.bincount(bins, values[inside], minlength=n.size)
        return np.where(n > 0, total / np.maximum(n, 1), np.inf) - clutter

    length = (g_along >= a0) & (g_along <= along.max())
    # water is looked for along its keel, the middle of its width (its edges are the blur of the resolution cell,
    # as faint as water beside a dim deck); strong returns over its whole width (less speckle)
    keel, half = float(np.median(across)), max(0.75, 0.25 * float(across.max() - across.min()))
    profile = profile_along(length & (np.abs(g_across - keel) <= half))
    whole = profile_along(length & (g_across >= across.min()) & (g_across <= across.max()))
    sea = profile <= SEA_GAP * clutter
    run = max(1, round(REFERENCE_PIXEL_M / pixel_size_m))
    # a run of sea bins of at least a resolution cell, with returns on both sides of it
    above = np.flatnonzero(~sea)
    if above.size < 2:
        return False
    if (true_runs(sea[above[0]:above[-1] + 1]) >= run).any():
        return True
    # or three strong returns or more in a row (above half the strongest): at 10 m the blur fills the 30 m of water
    # between cages 50 m apart, but a hull has two such returns at most (a bow and a bridge, its dim deck between,
    # whose speckle a lower level had cut into returns of their own)
    # (at 10 m a bulk carrier's hatch cranes or a tanker's manifold look the same: such hulls abreast stay one
    # target, as they were before any cut; a grid cut into rows would be several ships that are not there)
    p = whole[above[0]:above[-1] + 1]
    p = np.where(np.isfinite(p), p, 0.0)
    return true_runs(p > STRONG_RETURN * p.max()).size >= 3


def split_side_by_side(img: np.ndarray, rr: np.ndarray, cc: np.ndarray, *, clutter: float, pixel_size_m: float,
                       params: CfarParams = CfarParams(), shape: Shape | None = None, _depth: int = 0,
                       _heading: float | None = None) -> list[np.ndarray]:
    """The hulls of one target (indices into ``rr``/``cc``): the target itself, or the ships side by side that
    merged into it (see SPLIT_VALLEY). ``shape``: the target measured on every hit, when the caller has it."""
    whole = [np.arange(rr.size)]
    if _depth >= SPLIT_DEPTH or rr.size < 2 * params.min_pixels:
        return whole
    shape = shape or measure_pixels(rr, cc, pixel_size_m)
    if shape.width_m < SPLIT_MIN_WIDTH_M:
        return whole
    y, x = rr.astype(np.float64), cc.astype(np.float64)
    # along its axis only: a cut across it would part bands of bright returns that run across hulls abreast (bows,
    # manifolds, bridges), and such bands had been taken for hulls (two tankers 80 m apart cut into three 120 m
    # "ships" turned 90 degrees); so four hulls abreast or more, wider than long, stay one target
    headings = [shape.heading_deg] if _heading is None else [_heading]
    if _heading is None and shape.length_m < SPLIT_SQUARE * shape.width_m:
        # nearly square: the axis of its hits says little (a pair of hulls abreast had come out at 52 degrees to
        # them), so every direction is tried
        headings = [(shape.heading_deg + a) % 180.0 for a in range(0, 180, 15)]

    def valleys(h: float) -> list[tuple[float, float, np.ndarray, float]]:
        return _valleys(img, y, x, math.sin(math.radians(h)), -math.cos(math.radians(h)), clutter)

    cuts = sorted((c for h in headings for c in valleys(h)), key=lambda c: c[0])
    # the deepest cut's direction alone: when its pieces are no hulls, a cut in another direction would part the
    # target along its bands of bright returns instead (see above); another place along it may do
    cuts = [c for c in cuts if c[3] == cuts[0][3]] if cuts else cuts
    for _, at, across, heading in cuts[:3]:  # the deepest first; a shallower one may give hull-shaped pieces
        pieces: list[np.ndarray] = []
        for side in (np.flatnonzero(across < at), np.flatnonzero(across >= at)):
            if side.size < params.min_pixels:
                break
            inner = split_side_by_side(img, rr[side], cc[side], clutter=clutter, pixel_size_m=pixel_size_m,
                                       params=params, _depth=_depth + 1, _heading=heading)
            hulls = [side[i] for i in inner]
            if not all(_hull_along(img, rr[h], cc[h], pixel_size_m, params, heading)
                       and not _broken(img, rr[h], cc[h], heading, clutter, pixel_size_m) for h in hulls):
                break
            pieces.extend(hulls)
        else:
            return pieces
    return whole


def targets_from_hits(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, pixel_size_m: float, params: CfarParams = CfarParams(),
    water: np.ndarray | None = None,
) -> list[Detection]:
    """Cluster hits, discard clusters of the wrong size, split ships side by side, measure the rest; ``water``
    (when given) is where the clutter level that scores them is taken."""
    rows, cols, labels = group_hits(rows, cols, params)
    if labels.size == 0:
        return []
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    img = np.asarray(image)
    clutter = clutter_level(img, water)
    hulls: list[np.ndarray] = []
    for idx in np.split(order, bounds):  # group_hits kept only targets of at least min_pixels hits
        every = measure_pixels(rows[idx], cols[idx], pixel_size_m)
        if not params.min_length_m <= every.length_m <= params.max_length_m:
            continue  # the size filter takes every hit (its core must not decide whether a ship is kept)
        hulls.extend(idx[part] for part in split_side_by_side(img, rows[idx], cols[idx], clutter=clutter,
                                                              pixel_size_m=pixel_size_m, params=params, shape=every))
    out: list[Detection] = []
    for idx in hulls:
        rr, cc = rows[idx], cols[idx]
        vals = img[rr, cc].astype(np.float64)
        shape = _hull_shape(img, rr, cc, pixel_size_m)
        wsum = vals.sum() or 1.0
        # size, times brightness against the sea: a hull 32 times the clutter's median scores 1 (10 times: 0.67),
        # the same in any pixel type or calibration (it had been the share of the type's range: 0.09 for a uint16
        # image, 0.99 for the same values as floats)
        contrast = float(vals.mean()) / clutter
        score = float(1.0 - math.exp(-idx.size / 10.0)) * min(1.0, max(0.0, math.log10(max(contrast, 1.0)) / 1.5))
        out.append(Detection(
            row=float((rr * vals).sum() / wsum), col=float((cc * vals).sum() / wsum),
            length_m=shape.length_m, width_m=shape.width_m, heading_deg=shape.heading_deg,
            score=round(min(1.0, max(0.0, score)), 4),
        ))
    return out


def clutter_level(image: np.ndarray, water: np.ndarray | None = None) -> float:
    """The median of the positive finite values over the water (the whole image without a mask; every 8th pixel
    each way, or sparser for a whole scene: about a million values are enough for a level): the sea's typical
    return, against which a target's brightness is scored. A port window is mostly bright land and quays, so
    the mask matters: over all pixels the "sea" would be the land."""
    img = np.asarray(image)
    step = max(8, int(math.sqrt(img.size / 1e6)))
    sample = img[::step, ::step].astype(np.float64, copy=False)
    ok = np.isfinite(sample) & (sample > 0)
    if water is not None:
        sea = ok & np.asarray(water, bool)[::step, ::step]
        if sea.sum() < 50:  # little water in the sample: take all of its pixels (a port window is small)
            vals = img[np.asarray(water, bool)].astype(np.float64, copy=False)
            vals = vals[np.isfinite(vals) & (vals > 0)]
            return float(np.median(vals)) if vals.size else clutter_level(img)
        ok = sea
    sample = sample[ok]
    return float(np.median(sample)) if sample.size else 1.0


SAR_VALUES = ("amplitude", "intensity")


def to_single_band(image: np.ndarray) -> np.ndarray:
    """Accept (H, W) or an RGB(A) rendering of a SAR image (H, W, 3|4) and return one band."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].max(axis=2) if img.shape[2] in (3, 4) else img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"SAR image must be 2-D (or H x W x 3), got shape {img.shape}")
    return img


def detect_sar(
    image: np.ndarray,
    *,
    pixel_size_m: float,
    water: np.ndarray | None = None,
    params: CfarParams = CfarParams(),
    reference: bool = False,
    values: str = "amplitude",
    censor: bool | None = None,
) -> list[Detection]:
    """Find ships in a SAR amplitude or intensity image (linear scale, any dtype) with the fast CFAR.

    ``pixel_size_m`` is the ground pixel size; ``water`` (bool, same shape) limits targets and background
    statistics to water. ``reference=True`` uses the full-resolution reference CFAR instead (slow).

    ``values``: ``amplitude`` (a GRD's digital numbers, a rendering) or ``intensity`` (power: sigma0 and gamma0
    products; its square root is taken, as the CFAR's settings are for amplitude: on intensity, with clutter
    tails twice as heavy, it found twice the targets at a port). The values cannot tell which they are (an
    amplitude scaled to 0-1 looks like a backscatter coefficient), so the caller says it.

    ``censor``: whether loud targets may be censored out of the rings where ``water`` says the sea is open
    (:func:`censored_hits`); by default when a water mask is given. A ``water`` that marks only the image's valid
    pixels (no water mask: ``detect sar --water none``) is no such mask: give ``censor=False``.
    """
    if censor is None:
        censor = water is not None  # decided before NaN no-data makes a mask of its own
    if values not in SAR_VALUES:
        raise ValueError(f"values must be one of {', '.join(SAR_VALUES)}, got {values!r}")
    if pixel_size_m <= 0:
        raise ValueError(f"pixel_size_m must be positive, got {pixel_size_m}")
    img = to_single_band(image)
    if np.issubdtype(img.dtype, np.floating):
        # the water searched, when given, holds no no-data; and a fill (-999, -9999, -32768) is no value in any
        # case: the decibels of a real scene lie above -100
        sample = img[::7, ::7]
        if water is not None and np.shape(water) == img.shape:
            wet = img[::7, ::7][np.asarray(water, bool)[::7, ::7]]
            sample = wet if wet.size >= 100 else sample  # a channel narrower than the grid: the whole image
        sample = sample[np.isfinite(sample) & (sample > -200)]
        if sample.size and np.median(sample) < 0:  # linear amplitude and intensity are never negative
            raise ValueError("most values are negative: decibels? the CFAR reads linear amplitude or intensity "
                             "(intensity = 10 ** (dB / 10)); in dB every ship had scored 0")
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        # NaN no-data would poison every ring sum it falls in (NaN x 0 is NaN): make it 0 and keep it out of the
        # water, so it counts neither as sea nor as a target
        finite = np.isfinite(img)
        water = finite if water is None else (np.asarray(water, bool) & finite)
        img = np.where(finite, img, 0).astype(img.dtype)
    if values == "intensity":
        img = np.sqrt(np.maximum(img.astype(np.float32), 0.0))
    params = params.at(pixel_size_m)
    # crops around loud targets take the block path: a few times the window's area, where the reference filters
    # cost more than the screen (300 crops had taken 2.6 s of a scene's 5)
    hits = censored_hits(img, cfar_hits_reference if reference else cfar_hits, pixel_size_m=pixel_size_m,
                         water=water, params=params,
                         crop_hits=None if reference else functools.partial(cfar_hits, small_image_reference=False,
                                                                            threads=1),
                         censor=censor)
    return targets_from_hits(img, hits[0], hits[1], pixel_size_m=pixel_size_m, params=params, water=water)
