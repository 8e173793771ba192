"""Score detections against labelled truth with the xView3 rule.

Matching: one-to-one Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on centre distances; a pair
counts as a hit when the centres are within 200 m (or ``max_px`` pixels when there is no ground scale).
Reported: precision, recall, F1, F1 near shore (truth within 2 km of the water edge, with detections in the
same zone), and the length error over matched pairs where the truth has a length.
Truth comes from COCO JSON (bbox + polygon or uncompressed RLE, in pixel coordinates) or Pascal VOC XML (boxes).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from routewatch.detect.base import Detection
from routewatch.detect.measure import measure_mask

MATCH_DISTANCE_M = 200.0
NEAR_SHORE_M = 2000.0


@dataclass
class TruthObject:
    """One labelled ship: centre in pixel coordinates (row 0.0 = centre of the first row), box, optional mask."""

    row: float
    col: float
    bbox: tuple[float, float, float, float]  # x, y, width, height in pixels
    mask_rows: np.ndarray | None = None
    mask_cols: np.ndarray | None = None
    length_m: float | None = None


@dataclass
class Scores:
    """Detection quality for one image or a pooled set; counts are objects, lengths are metres."""

    tp: int
    fp: int
    fn: int
    length_errors_m: list[float] = field(default_factory=list)
    near_tp: int = 0
    near_fp: int = 0
    near_fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return _f1(self.tp, self.fp, self.fn)

    @property
    def f1_near_shore(self) -> float | None:
        """None when the near-shore split was not made or nothing lies near shore."""
        n = self.near_tp + self.near_fp + self.near_fn
        return _f1(self.near_tp, self.near_fp, self.near_fn) if n else None

    @property
    def length_mae_m(self) -> float | None:
        return float(np.mean(np.abs(self.length_errors_m))) if self.length_errors_m else None

    def __add__(self, other: Scores) -> Scores:
        return Scores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.length_errors_m + other.length_errors_m, self.near_tp + other.near_tp,
                      self.near_fp + other.near_fp, self.near_fn + other.near_fn)

    def as_dict(self) -> dict[str, float | int | None]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "f1_near_shore": self.f1_near_shore, "near_shore_truth": self.near_tp + self.near_fn,
                "length_mae_m": self.length_mae_m, "matched_lengths": len(self.length_errors_m),
                "near_tp": self.near_tp, "near_fp": self.near_fp, "near_fn": self.near_fn}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def _rle_decode(counts: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Uncompressed COCO RLE (column-major runs, starting with background) to a bool mask."""
    h, w = int(size[0]), int(size[1])
    flat = np.zeros(h * w, bool)
    pos = 0
    for i, n in enumerate(counts):
        if i % 2:
            flat[pos : pos + int(n)] = True
        pos += int(n)
    return flat.reshape((w, h)).T


def _poly_mask(polys: Sequence[Sequence[float]], bbox: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centres fall inside a COCO polygon (pixel-edge coordinates)."""
    from matplotlib.path import Path as MplPath

    x0, y0, bw, bh = bbox
    cs, rs = np.meshgrid(np.arange(int(x0) - 1, int(x0 + bw) + 2), np.arange(int(y0) - 1, int(y0 + bh) + 2))
    pts = np.column_stack([cs.ravel() + 0.5, rs.ravel() + 0.5])
    inside = np.zeros(len(pts), bool)
    for poly in polys:
        xy = np.asarray(poly, float).reshape(-1, 2)
        inside |= MplPath(xy).contains_points(pts)
    return rs.ravel()[inside], cs.ravel()[inside]


def load_coco(path: str | Path, pixel_size_m: float | tuple[float, float] | None = None) -> list[TruthObject]:
    """Read ships from a COCO JSON file; lengths (long axis of each outline) need ``pixel_size_m``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        anns = data["annotations"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{p}: not a readable COCO annotation file ({exc})") from exc
    out = []
    for i, a in enumerate(anns):
        try:
            x, y, bw, bh = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{p}: annotation {i} has no valid 'bbox'") from exc
        seg = a.get("segmentation")
        rr = cc = None
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            m = _rle_decode(seg["counts"], seg["size"])
            rr, cc = np.nonzero(m)
        elif isinstance(seg, list) and seg:
            rr, cc = _poly_mask(seg, (x, y, bw, bh))
        if rr is not None and rr.size:
            row, col = float(rr.mean()), float(cc.mean())
        else:
            rr = cc = None
            row, col = y + bh / 2 - 0.5, x + bw / 2 - 0.5
        length = None
        if pixel_size_m is not None:
            if rr is not None:
                length = measure_mask_pixels(rr, cc, pixel_size_m)
            else:
                length = float(np.hypot(bw, bh)) * (pixel_size_m if np.isscalar(pixel_size_m) else pixel_size_m[0])  # type: ignore[operator,index]
        out.append(TruthObject(row, col, (x, y, bw, bh), rr, cc, length))
    return out


def measure_mask_pixels(rows: np.ndarray, cols: np.ndarray, pixel_size_m: float | tuple[float, float]) -> float:
    """Long-axis length in metres of a labelled outline given by its pixels."""
    r0, c0 = rows.min(), cols.min()
    m = np.zeros((rows.max() - r0 + 1, cols.max() - c0 + 1), bool)
    m[rows - r0, cols - c0] = True
    return measure_mask(m, pixel_size_m).length_m


def load_voc(path: str | Path) -> list[TruthObject]:
    """Read ship boxes from a Pascal VOC XML file (no lengths: boxes do not give the ship's axis)."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"{p}: not a readable Pascal VOC file ({exc})") from exc
    out = []
    for i, obj in enumerate(root.iter("object")):
        box = obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{p}: object {i} has no valid <bndbox>") from exc
        out.append(TruthObject((y0 + y1) / 2, (x0 + x1) / 2, (x0, y0, x1 - x0, y1 - y0)))
    return out


def load_truth(path: str | Path, pixel_size_m: float | tuple[float, float] | None = None) -> list[TruthObject]:
    """COCO JSON or Pascal VOC XML, chosen by the file's suffix."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return load_coco(p, pixel_size_m)
    if p.suffix.lower() == ".xml":
        return load_voc(p)
    raise ValueError(f"{p}: truth must be COCO JSON (.json) or Pascal VOC XML (.xml)")


def truth_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) in pixels of the one image a COCO or Pascal VOC file labels, when it says (None for a
    COCO file of several images): checked against the image the detections were made on."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".json":
            images = json.loads(p.read_text()).get("images") or []
            if len(images) != 1:
                return None
            return int(images[0]["width"]), int(images[0]["height"])
        size = ET.parse(p).getroot().find("size")
        if size is None:
            return None
        width, height = int(size.findtext("width") or 0), int(size.findtext("height") or 0)
        return (width, height) if width > 0 and height > 0 else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ET.ParseError):
        return None


def truth_image_name(path: str | Path) -> str | None:
    """The file name of the one image a COCO (``file_name``) or Pascal VOC (``filename``) file labels, if it says."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".json":
            images = json.loads(p.read_text()).get("images") or []
            return str(images[0].get("file_name") or "") or None if len(images) == 1 else None
        return (ET.parse(p).getroot().findtext("filename") or "").strip() or None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ET.ParseError):
        return None


def same_image_name(labelled: str, image: str, truth_path: str | Path | None = None) -> bool:
    """Whether a truth file's image name can be the image the detections were made on.

    Band files (``B04.tiff`` labelled, detections on ``B02.tiff``) are the same scene only when the truth file lies
    in the image's folder, as the sen2ships ports do. Names with a long number (``ship_hh_0201611139301040015``
    and ``Gao_ship_hh_0201611139301040015.jpg``, ``ship0201610150202506`` and ``Sen_ship_hh_0201610150202506``)
    are the same image when the longest numbers agree; other names when one holds the other.
    """
    a, b = Path(labelled).stem.lower(), Path(image).stem.lower()
    if _BAND_NAME.fullmatch(a) and _BAND_NAME.fullmatch(b):
        return truth_path is None or Path(truth_path).resolve().parent == Path(image).resolve().parent
    da, db = (max(re.findall(r"\d+", x), key=len, default="") for x in (a, b))
    if len(da) >= 4 and len(db) >= 4:
        return da == db
    return bool(a and b and (a in b or b in a))


_BAND_NAME = re.compile(r"b\d{1,2}a?|b8a|[a-z]+_b\d{1,2}a?")


def distance_to_shore_px(water: np.ndarray) -> np.ndarray:
    """Distance in pixels from every pixel to the nearest land pixel (0 on land)."""
    w = np.asarray(water, bool)
    if w.all():
        return np.full(w.shape, np.inf)
    return ndimage.distance_transform_edt(w)


def match(
    det_rc: np.ndarray, truth_rc: np.ndarray, max_distance: float
) -> list[tuple[int, int]]:
    """xView3 one-to-one matching: Hungarian assignment, pairs farther than ``max_distance`` do not count."""
    if len(det_rc) == 0 or len(truth_rc) == 0:
        return []
    d = np.hypot(det_rc[:, None, 0] - truth_rc[None, :, 0], det_rc[:, None, 1] - truth_rc[None, :, 1])
    big = max_distance * 10 + d.max() + 1
    cost = np.where(d <= max_distance, d, big)
    ri, ci = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(ri, ci, strict=True) if d[i, j] <= max_distance]


def _centres(objects: Sequence[Detection] | Sequence[TruthObject]) -> np.ndarray:
    return np.array([[o.row, o.col] for o in objects], float).reshape(-1, 2)


def _radius_px(pixel_size_m: float | None, max_px: float) -> float:
    """The hit radius in pixels: 200 m on the ground, or ``max_px`` without a ground scale."""
    return MATCH_DISTANCE_M / pixel_size_m if pixel_size_m else max_px


def match_objects(
    detections: Sequence[Detection], truth: Sequence[TruthObject], *, pixel_size_m: float | None = None,
    max_px: float = 20.0,
) -> list[tuple[int, int]]:
    """(detection index, truth index) pairs under the xView3 rule, as :func:`score` counts them."""
    return match(_centres(detections), _centres(truth), _radius_px(pixel_size_m, max_px))


def score(
    detections: Sequence[Detection],
    truth: Sequence[TruthObject],
    *,
    pixel_size_m: float | None = None,
    max_px: float = 20.0,
    shore_distance_px: np.ndarray | None = None,
) -> Scores:
    """Score one image's detections (pixel coordinates) against its truth.

    With ``pixel_size_m`` (ground metres per pixel) the hit radius is 200 m; without, ``max_px`` pixels.
    ``shore_distance_px`` (from :func:`distance_to_shore_px`) enables the near-shore figures.
    """
    det_rc, tru_rc = _centres(detections), _centres(truth)
    pairs = match(det_rc, tru_rc, _radius_px(pixel_size_m, max_px))
    tp = len(pairs)
    s = Scores(tp=tp, fp=len(det_rc) - tp, fn=len(tru_rc) - tp)
    for i, j in pairs:
        if truth[j].length_m is not None:
            s.length_errors_m.append(float(detections[i].length_m - truth[j].length_m))
    if shore_distance_px is not None and pixel_size_m:
        lim = NEAR_SHORE_M / pixel_size_m

        def near(rc: np.ndarray) -> np.ndarray:
            r = np.clip(np.round(rc[:, 0]).astype(int), 0, shore_distance_px.shape[0] - 1)
            c = np.clip(np.round(rc[:, 1]).astype(int), 0, shore_distance_px.shape[1] - 1)
            return shore_distance_px[r, c] <= lim

        nd, nt = near(det_rc), near(tru_rc)
        near_pairs = sum(1 for i, j in pairs if nt[j])
        s.near_tp = near_pairs
        s.near_fn = int(nt.sum()) - near_pairs
        s.near_fp = int(sum(1 for i in np.flatnonzero(nd) if i not in {p[0] for p in pairs}))
    return s


@dataclass
class LabelledPort:
    """One labelled optical image of the shared sen2ships data: bands, georeference, ground pixel size, truth."""

    name: str
    bands: dict[str, np.ndarray]
    transform: object
    crs: object
    pixel_size_m: tuple[float, float]
    truth: list[TruthObject]


S2_BANDS = {"blue": "B02.tiff", "green": "B03.tiff", "red": "B04.tiff", "nir": "B08.tiff"}


def load_sen2ships_port(folder: str | Path) -> LabelledPort:
    """Read one port folder (B02/B03/B04/B08 GeoTIFFs + annotations_coco.json), lengths in ground metres."""
    import rasterio

    from routewatch.detect.measure import ground_pixel_size

    d = Path(folder)
    bands = {}
    transform = crs = None
    for name, fname in S2_BANDS.items():
        with rasterio.open(d / fname) as ds:
            bands[name] = ds.read(1)
            transform, crs = ds.transform, ds.crs
    assert transform is not None
    px = ground_pixel_size(transform, crs, bands["red"].shape)
    truth = load_coco(d / "annotations_coco.json", px)
    return LabelledPort(d.name, bands, transform, crs, px, truth)


def sen2ships_ports(root: str | Path) -> list[Path]:
    """Port folders of the shared sen2ships data, sorted by name."""
    return sorted(p for p in Path(root).iterdir() if (p / "annotations_coco.json").is_file())


def sar_chips(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, Pascal VOC) pairs of the shared SAR chips, sorted by name."""
    return sorted((p, p.with_suffix(".xml")) for p in Path(root).glob("*.jpg") if p.with_suffix(".xml").is_file())


def load_gray(path: str | Path) -> np.ndarray:
    """An 8-bit image file (JPEG/PNG) as one uint8 band."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def render_figure(
    rgb: np.ndarray, truth: Sequence[TruthObject], detections: Sequence[Detection], path: Path, max_width: int = 480
) -> None:
    """A small PNG: truth boxes in red, detections as green rings, for the evaluation write-up."""
    from PIL import Image, ImageDraw

    img = np.asarray(rgb, dtype=np.float64)
    lo, hi = np.percentile(img, [1, 99])
    u8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    im = Image.fromarray(u8).convert("RGB")
    scale = min(1.0, max_width / im.width)
    if scale < 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    d = ImageDraw.Draw(im)
    for t in truth:
        x, y, bw, bh = (v * scale for v in t.bbox)
        d.rectangle([x - 1, y - 1, x + bw + 1, y + bh + 1], outline=(255, 40, 40))
    for det in detections:
        r, c, rad = (det.row + 0.5) * scale, (det.col + 0.5) * scale, 4
        d.ellipse([c - rad, r - rad, c + rad, r + rad], outline=(40, 255, 40), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.quantize(colors=48).save(path, optimize=True)
