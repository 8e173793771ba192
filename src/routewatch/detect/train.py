"""Train the optical ship segmentation network on the shared labelled ports, reproducibly, on the CPU.

    python -m routewatch.detect.train            # train on all ports, write detect/models/optical_s2.onnx
    python -m routewatch.detect.train --lopo     # leave-one-port-out estimate for unseen ports
    python -m routewatch.detect.train --detection-curve MAPS   # detection probability by length, held out

Needs the ``train`` extra (PyTorch, CPU build); inference does not (the model is exported to ONNX).
Fixed seed, fixed number of steps, two threads: the same command gives the same weights on the same machine.
Targets are the labelled ship outlines, with the pixels where two ships touch set to background so that ships
moored side by side come out as separate regions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from routewatch.detect.evaluate import LabelledPort, Scores, load_sen2ships_port, score, sen2ships_ports
from routewatch.detect.optical import (
    DEFAULT_MODEL,
    OpticalParams,
    detections_from_probability,
    optical_features,
)

SEED = 20240302
CROP = 64
BATCH = 16
STEPS = 3000


def shared_root() -> Path:
    """The shared data folder beside the repository, or ``ROUTEWATCH_SHARED``."""
    env = os.environ.get("ROUTEWATCH_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared"


def port_targets(port: LabelledPort) -> tuple[np.ndarray, np.ndarray]:
    """Ship mask with touching-instance borders removed, and per-pixel loss weights."""
    h, w = port.bands["red"].shape
    lab = np.zeros((h, w), np.int32)
    for i, t in enumerate(port.truth, start=1):
        if t.mask_rows is not None:
            lab[t.mask_rows, t.mask_cols] = i
        else:
            x, y, bw, bh = (round(v) for v in t.bbox)
            lab[y : y + bh, x : x + bw] = i
    mx = ndimage.maximum_filter(lab, 3)
    big = np.where(lab == 0, np.iinfo(np.int32).max, lab)
    mn = ndimage.minimum_filter(big, 3)
    border = (lab > 0) & ((mx != lab) | (mn != lab))
    target = ((lab > 0) & ~border).astype(np.float32)
    weight = np.ones((h, w), np.float32)
    weight[border] = 3.0
    weight[ndimage.binary_dilation(lab > 0, iterations=2) & (lab == 0)] = 2.0  # the quay right beside a ship
    return target, weight


def centre_targets(port: LabelledPort) -> np.ndarray:
    """The ship-centre heat map (H, W) of the ``--centres`` head: 1 at the pixel nearest each labelled ship's
    centre, falling off as a Gaussian along and across the hull (spreads of 0.4 times the outline's own spread
    along each principal axis, at least a pixel), the largest value where two ships' maps overlap. One peak a ship,
    however ships lie against each other: ships moored in a row, which merge in the outline map, stay apart here.
    """
    h, w = port.bands["red"].shape
    heat = np.zeros((h, w), np.float32)
    for t in port.truth:
        if t.mask_rows is not None and len(t.mask_rows) >= 2:
            pts = np.stack([np.asarray(t.mask_rows, float), np.asarray(t.mask_cols, float)], 1)
            centre = pts.mean(0)
            var, vec = np.linalg.eigh(np.cov(pts.T) + 1e-6 * np.eye(2))
        else:
            x, y, bw, bh = t.bbox
            centre = np.array([y + bh / 2 - 0.5, x + bw / 2 - 0.5])
            var, vec = np.array([bh, bw], float) ** 2 / 12.0, np.eye(2)
        sd = np.maximum(1.0, 0.4 * np.sqrt(np.maximum(var, 0.0)))
        reach = int(np.ceil(3 * sd.max()))
        r0, c0 = (round(float(v)) for v in centre)
        rs = np.arange(max(0, r0 - reach), min(h, r0 + reach + 1))
        cs = np.arange(max(0, c0 - reach), min(w, c0 + reach + 1))
        if not rs.size or not cs.size:
            continue
        d = np.stack(np.meshgrid(rs - centre[0], cs - centre[1], indexing="ij"), -1) @ vec  # principal axes
        g = np.exp(-0.5 * ((d[..., 0] / sd[0]) ** 2 + (d[..., 1] / sd[1]) ** 2)).astype(np.float32)
        block = heat[rs[0] : rs[-1] + 1, cs[0] : cs[-1] + 1]
        np.maximum(block, g, out=block)
        if 0 <= r0 < h and 0 <= c0 < w:
            heat[r0, c0] = 1.0
    return heat


def centre_loss(logit, heat):  # type: ignore[no-untyped-def]
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) per ship: the peak pixels (heat 1) pulled up,
    the rest pushed down less the nearer they are to a peak."""
    import torch

    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    peak = heat >= 0.999
    pos = ((1 - p) ** 2 * torch.log(p))[peak].sum()
    neg = ((1 - heat) ** 4 * p**2 * torch.log(1 - p))[~peak].sum()
    return -(pos + neg) / peak.sum().clamp(min=1)


def build_net(in_ch: int = 5, width: int = 16, outputs: int = 1):  # type: ignore[no-untyped-def]
    """A small U-Net (about 60 k weights): two poolings, dilated middle for quay-scale context. ``outputs``: the
    ship-outline logit, and with 2 also the ship-centre logit (``--centres``)."""
    import torch
    from torch import nn

    def conv(ci: int, co: int, dil: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(ci, co, 3, padding=dil, dilation=dil, bias=False), nn.BatchNorm2d(co),
                             nn.ReLU(inplace=True))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.e1 = nn.Sequential(conv(in_ch, w), conv(w, w))
            self.e2 = nn.Sequential(conv(w, 2 * w), conv(2 * w, 2 * w))
            self.mid = nn.Sequential(conv(2 * w, 3 * w), conv(3 * w, 3 * w, 2), conv(3 * w, 3 * w, 4))
            self.d2 = conv(5 * w, 2 * w)
            self.d1 = conv(3 * w, w)
            self.head = nn.Conv2d(w, outputs, 1)
            if outputs > 1:
                with torch.no_grad():
                    self.head.bias[1:] = -4.0  # centres are rare: start at about 2 % (CenterNet starts at 10 %)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.e1(x)
            b = self.e2(self.pool(a))
            m = self.mid(self.pool(b))
            b2 = self.d2(torch.cat([self.up(m), b], 1))
            a2 = self.d1(torch.cat([self.up(b2), a], 1))
            return self.head(a2)

    return Net()


@dataclasses.dataclass(frozen=True)
class ShipCutout:
    """One labelled ship cut from a training port: its features with a margin, and its outline."""

    features: np.ndarray  # (5, h + 2m, w + 2m)
    mask: np.ndarray  # (h + 2m, w + 2m) bool, the labelled outline


PASTE_MARGIN = 2


def ship_cutouts(feats: np.ndarray, port: LabelledPort, max_size: int = CROP // 2) -> list[ShipCutout]:
    """The port's labelled ships with outlines, each cut out with a margin so that it can be blended in."""
    m = PASTE_MARGIN
    _, h, w = feats.shape
    out = []
    for t in port.truth:
        if t.mask_rows is None or len(t.mask_rows) < 4:
            continue
        rr, cc = np.asarray(t.mask_rows), np.asarray(t.mask_cols)
        r0, r1, c0, c1 = rr.min() - m, rr.max() + m + 1, cc.min() - m, cc.max() + m + 1
        if r0 < 0 or c0 < 0 or r1 > h or c1 > w or max(r1 - r0, c1 - c0) > max_size:
            continue
        mask = np.zeros((r1 - r0, c1 - c0), bool)
        mask[rr - r0, cc - c0] = True
        out.append(ShipCutout(feats[:, r0:r1, c0:c1].copy(), mask))
    return out


def _paste(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, w: np.ndarray, cut: ShipCutout) -> bool:
    """Paste a ship from another place into open water of the crop, beside the land where there is any (most
    labelled ships lie at quays, and the network must learn to tell a hull at a quay from the quay).

    The cutout is turned by a random multiple of 90 degrees and mirrored, and blended over a soft edge so that no
    hard seam gives it away; targets and weights are set as :func:`port_targets` sets them."""
    k = int(rng.integers(4))
    f, mk = np.rot90(cut.features, k, (1, 2)), np.rot90(cut.mask, k)
    if rng.random() < 0.5:
        f, mk = f[:, :, ::-1], mk[:, ::-1]
    ph, pw = mk.shape
    H, W = y.shape
    if ph >= H or pw >= W:
        return False
    water = x[4] > 0.0
    blocked = ~water | ndimage.binary_dilation(y > 0, iterations=2)
    # Top-left corners where no outline pixel falls on land or near another ship ("valid" correlation).
    ok = signal.correlate(blocked.astype(np.float32), mk.astype(np.float32), mode="valid") < 0.5
    if not ok.any():
        return False
    ring = ndimage.binary_dilation(np.pad(mk, 2), iterations=2)[2:-2, 2:-2].astype(np.float32)
    touch = signal.correlate((~water).astype(np.float32), ring, mode="valid") > 0.5
    choice = ok & touch if (ok & touch).any() and rng.random() < 0.8 else ok
    cand = np.flatnonzero(choice)
    r0, c0 = divmod(int(cand[rng.integers(cand.size)]), W - pw + 1)
    sl = (slice(r0, r0 + ph), slice(c0, c0 + pw))
    alpha = np.clip(ndimage.gaussian_filter(mk.astype(np.float32), 0.6) * 1.5, 0.0, 1.0)
    alpha[mk] = 1.0
    x[:, sl[0], sl[1]] = alpha * f + (1.0 - alpha) * x[:, sl[0], sl[1]]
    ys, ws = y[sl], w[sl]
    ys[mk] = 1.0
    ws[mk] = 1.0
    near = ndimage.binary_dilation(mk, iterations=2) & ~mk
    ws[near] = np.maximum(ws[near], 2.0)
    return True


def check_recipe(crop: int, shore: float, paste: float = 0.0, centres: bool = False) -> None:
    """Refuse a crop the network cannot take, a share of quay crops beyond what the ship crops leave, or pasted
    ships with the centre head (the pasted outlines carry no centre map)."""
    if paste > 0 and centres:
        raise ValueError("--paste and --centres cannot be combined: pasted ships carry no centre map")
    if not 0.0 <= shore <= 0.4:
        raise ValueError(f"shore is a share of all training crops (60 % are centred on ships): 0 to 0.4, not {shore}")
    if crop < 16 or crop % 4:
        raise ValueError(f"crop must be a multiple of 4 (the network pools twice) and at least 16, not {crop}")


def water_edge(feats: np.ndarray) -> np.ndarray:
    """Flat indices of the water pixels (NDWI > 0) that touch anything else: mostly quays, which ``--shore``
    crops centre on, but also the water around ships and clouds. Without a near-infrared band NDWI is zero
    everywhere, so there is no edge and such a port gets no quay crops."""
    water = feats[4] > 0.0
    return np.flatnonzero(water & ~ndimage.binary_erosion(water, border_value=1))


def _corner_near(rng: np.random.Generator, centre: tuple[int, int], jitter: int, crop: int,
                 shape: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a crop centred near ``centre`` (up to ``jitter`` pixels off), inside the image."""
    (r, c), (h, w) = centre, shape
    r0 = int(np.clip(r - crop // 2 + rng.integers(-jitter, jitter + 1), 0, h - crop))
    return r0, int(np.clip(c - crop // 2 + rng.integers(-jitter, jitter + 1), 0, w - crop))


def _sample(rng: np.random.Generator, data: list[tuple[np.ndarray, np.ndarray, np.ndarray, list, np.ndarray]],
            cutouts: list[ShipCutout] | None = None, paste: float = 0.0, crop: int = CROP,
            shore: float = 0.0) -> tuple:
    """One augmented batch (inputs, targets with the channels of ``data``'s targets, weights): crops centred near a ship (60 % of the crops), on the water's edge (a share ``shore``
    of at most 0.4: quays, where the false alarms are) or anywhere, with a chance ``paste`` of one or two ships
    from elsewhere pasted beside the crop's quays, random dihedral flips, gain jitter."""
    xs, ys, ws = [], [], []
    sizes = np.array([d[0].shape[1] * d[0].shape[2] for d in data], float)
    p = np.sqrt(sizes) / np.sqrt(sizes).sum()
    for _ in range(BATCH):
        f, t, w, centres, edge = data[rng.choice(len(data), p=p)]
        _, h, wd = f.shape
        u = rng.random() if centres or edge.size else 1.0  # no draw without a choice (keeps old seeds' crops)
        if centres and u < 0.6:
            r0, c0 = _corner_near(rng, centres[rng.integers(len(centres))], 3 * crop // 8, crop, (h, wd))
        elif edge.size and 0.6 <= u < 0.6 + shore:
            r0, c0 = _corner_near(rng, divmod(int(edge[rng.integers(edge.size)]), wd), 8, crop, (h, wd))
        else:
            r0, c0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, wd - crop + 1))
        sl = (slice(r0, r0 + crop), slice(c0, c0 + crop))
        x, y, ww = f[:, sl[0], sl[1]].copy(), t[:, sl[0], sl[1]].copy(), w[sl].copy()
        if cutouts and rng.random() < paste:
            for _ in range(int(rng.integers(1, 3))):
                _paste(rng, x, y[0], ww, cutouts[rng.integers(len(cutouts))])
        x[:4] += rng.normal(0, 0.15)  # product-to-product gain
        k = int(rng.integers(4))
        x, y, ww = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2)), np.rot90(ww, k)
        if rng.random() < 0.5:
            x, y, ww = x[:, :, ::-1], y[:, :, ::-1], ww[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
        ws.append(np.ascontiguousarray(ww))
    return np.stack(xs), np.stack(ys), np.stack(ws)[:, None]


def train_net(ports: list[LabelledPort], steps: int = STEPS, seed: int = SEED, progress: bool = True,
              threads: int = 2, device: str = "cpu", width: int = 16,
              paste: float = 0.0, crop: int = CROP, shore: float = 0.0,
              centres: bool = False):  # type: ignore[no-untyped-def]
    """Fit the network on the given ports; returns the torch module (on the CPU) in eval mode.

    ``centres``: a second output learns a heat map of ship centres (:func:`centre_targets`, :func:`centre_loss`)
    beside the outline map.

    ``device="cuda"`` only speeds up validation runs; the shipped weights are trained on the CPU.
    """
    check_recipe(crop, shore, paste, centres)  # before torch: the recipe's errors need no training extra
    small = [p.name for p in ports if min(p.bands["red"].shape) < crop]
    if small:
        raise ValueError(f"crop {crop} px is larger than the image of port(s) {', '.join(small)}")
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    data, cutouts = [], []
    for port in ports:
        t, w = port_targets(port)
        t = np.stack([t, centre_targets(port)]) if centres else t[None]
        feats = optical_features(port.bands)
        edge = water_edge(feats) if shore > 0 else np.zeros(0, np.int64)
        data.append((feats, t, w, [(round(o.row), round(o.col)) for o in port.truth], edge))
        if paste > 0:
            cutouts.extend(ship_cutouts(feats, port))
    net = build_net(width=width, outputs=2 if centres else 1).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    net.train()
    t0 = time.perf_counter()
    for step in range(steps):
        x, y, w = (torch.from_numpy(a).to(device) for a in _sample(rng, data, cutouts, paste, crop, shore))
        out = net(x)
        logit, y1 = out[:, :1], y[:, :1]
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, y1, weight=w,
                                                                  pos_weight=torch.tensor(2.0, device=device))
        p = torch.sigmoid(logit)
        dice = 1 - (2 * (p * y1).sum() + 1) / (p.sum() + y1.sum() + 1)
        loss = bce + 0.5 * dice
        if centres:
            loss = loss + centre_loss(out[:, 1:], y[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step + 1) % 100 == 0:
            print(f"  step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return net.cpu().eval()


def export_onnx(net, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write the network as ONNX with free image height and width (multiples of 4)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, torch.zeros(1, 5, 64, 64), str(tmp), input_names=["input"], output_names=["logit"],
                      dynamic_axes={"input": {2: "h", 3: "w"}, "logit": {2: "h", 3: "w"}}, opset_version=17,
                      dynamo=False)
    tmp.replace(path)


def evaluate_port(port: LabelledPort, model_path: Path, save_map: Path | None = None,
                  params: OpticalParams = OpticalParams()) -> Scores:
    """Score the detector on one labelled port (lengths in ground metres, 200 m hit radius), decoded as
    :func:`~routewatch.detect.optical.detect_optical` decodes it: by its centre map when the network has one
    (``--centres``; that map is saved beside the outline map as ``<port>.centre.npy``)."""
    from routewatch.detect.optical import network_maps

    maps = network_maps(optical_features(port.bands), model_path)
    if save_map is not None:
        save_map.mkdir(parents=True, exist_ok=True)
        np.save(save_map / f"{port.name}.npy", maps[0].astype(np.float16))
        if len(maps) > 1:
            np.save(save_map / f"{port.name}.centre.npy", maps[1].astype(np.float16))
    return score_maps(port, maps, params)


_SHORE: dict[str, np.ndarray] = {}


def port_shore_distance(port: LabelledPort) -> np.ndarray:
    """Pixels to the nearest land, from an NDWI > 0 water mask: only used to split the near-shore figures."""
    from routewatch.detect.evaluate import distance_to_shore_px

    if port.name not in _SHORE:
        _SHORE[port.name] = distance_to_shore_px(optical_features(port.bands)[4] > 0.0)
    return _SHORE[port.name]


def score_probability(port: LabelledPort, prob: np.ndarray, params: OpticalParams = OpticalParams()) -> Scores:
    """Score a probability map of a labelled port with the given post-processing."""
    return score_maps(port, prob[None], params)


def score_centres(port: LabelledPort, prob: np.ndarray, centre: np.ndarray,
                  params: OpticalParams = OpticalParams()) -> Scores:
    """Score the outline and centre maps of a labelled port, decoded by their centres (``--centres`` networks)."""
    return score_maps(port, np.stack([prob, centre]), params)


def score_maps(port: LabelledPort, maps: np.ndarray, params: OpticalParams = OpticalParams()) -> Scores:
    """Score a network's maps (1 or 2, H, W) of a labelled port, decoded as the detector decodes them."""
    from routewatch.detect.optical import detections_from_maps

    dets = detections_from_maps(maps, pixel_size_m=port.pixel_size_m, params=params)
    px = float(np.mean(port.pixel_size_m))
    return score(dets, port.truth, pixel_size_m=px, shore_distance_px=port_shore_distance(port))


def load_ports(cache: Path | None = None) -> list[LabelledPort]:
    """The labelled ports from ../shared, or from a pickle of them (``--cache``, for machines without rasterio)."""
    if cache is not None:
        import lzma
        import pickle

        opener = lzma.open if cache.suffix == ".xz" else open
        with opener(cache, "rb") as f:  # type: ignore[operator]
            return pickle.load(f)  # our own file of the shared ports (see --cache)
    root = shared_root() / "data" / "sen2ships"
    if not root.is_dir():
        raise SystemExit(f"labelled ports not found at {root} (set ROUTEWATCH_SHARED)")
    return [load_sen2ships_port(p) for p in sen2ships_ports(root)]


def _fold(args: tuple[Path | None, int, int, Path | None, str, dict]) -> tuple[str, dict]:
    """Train without one port and score the held-out port (one process per fold). With ``maps``, the fold's
    network is kept there too (``<port>.onnx``), so inference-side changes can be scored held out later.
    ``recipe`` holds :func:`train_net`'s recipe keywords (steps, width, paste, crop, shore, centres, seed)."""
    import tempfile

    cache, held_index, threads, maps, device, recipe = args
    ports = load_ports(cache)
    held = ports[held_index]
    net = train_net([p for i, p in enumerate(ports) if i != held_index], progress=False, threads=threads,
                    device=device, **recipe)
    with tempfile.TemporaryDirectory() as tmp:
        mp = (maps / f"{held.name}.onnx") if maps is not None else Path(tmp) / "fold.onnx"
        export_onnx(net, mp)
        s = evaluate_port(held, mp, maps)
    return held.name, {**s.as_dict(), "length_errors_m": s.length_errors_m}


SAR_GRID = {
    "k": (3.0, 3.5, 4.0, 5.0, 6.0),
    # guard and background half-sizes; the background ring must fit in the 256-pixel chips (assumed 10 m), or
    # its statistics are not local at all
    "windows_m": ((150.0, 300.0), (400.0, 600.0), (600.0, 900.0), (800.0, 1200.0)),
    "cluster_gap_px": (1, 2, 3, 4),
    "min_pixels": (12, 20, 30, 40),
    "blob_pixels": (1, 3, 5),
}
SAR_CLUTTER_SEEDS = (11, 12)  # single-look K clutter, 1024 x 1024 pixels each (about 100 km2 at 10 m)
SAR_MAX_FALSE_PER_IMAGE = 1.0
SAR_MAX_SIMULATED_L50_M = 60.0  # half the length of the reference case's ships (120-138 m)


def simulated_sar_l50(params, n_scenes: int = 8) -> float:  # type: ignore[no-untyped-def]
    """Length (m) at which the detection curve fitted on simulated Sentinel-1 ports (10 m pixels, ships of 10-200 m
    at anchor and at berths, the true coast as user polygons) reaches half its ceiling, with these CFAR settings."""
    import functools

    from routewatch.sources.imagery.calibrate import simulate_outcomes
    from routewatch.sources.imagery.looks import fit_detection_model
    from routewatch.sources.imagery.pipeline import default_detector

    lengths, found = simulate_outcomes("simulated-sar", n_scenes=n_scenes, ships_per_scene=12,
                                       detector=functools.partial(default_detector, sar_params=params),
                                       water_polygons=True)
    return fit_detection_model(lengths, found).l50_m


def sar_selection(pixel_size_m: float = 10.0) -> dict:
    """Choose the CFAR settings on the shared SAR chips, leave-one-chip-out, under a false-alarm bound.

    Each chip is searched inside its image-derived water mask (:func:`~routewatch.detect.water.sar_water`), as
    the imagery pipeline does when the user has no water polygons. Settings are admissible only when they give at
    most ``SAR_MAX_FALSE_PER_IMAGE`` false targets per 1024 x 1024 image of single-look K-distributed sea clutter
    (:func:`~routewatch.simulate.scenes.sea_clutter`): the eight chips alone would favour settings that chain
    speckle into false targets on a real scene. They must also keep seeing ships on 10 m Sentinel-1 pixels: the
    chips are 8-bit renderings of unknown, mostly finer resolution, where ships cover many more pixels, so a
    setting that counts pixels is checked on simulated Sentinel-1 ports (:func:`simulated_sar_l50` at most
    ``SAR_MAX_SIMULATED_L50_M``), best chip F1 first, until one passes. For each chip, the admissible grid point
    with the best pooled F1 on the other chips is scored on that chip: the pooled held-out result estimates what
    fixed settings do on an unseen image. The settings chosen on all chips are the ones to put in
    :class:`~routewatch.detect.sar.CfarParams`.
    """
    import itertools

    from routewatch.detect.evaluate import load_gray, load_voc, sar_chips
    from routewatch.detect.sar import CfarParams, cfar_hits_reference, targets_from_hits
    from routewatch.detect.water import sar_water
    from routewatch.simulate.scenes import sea_clutter

    chips = [(img.name, load_gray(img), load_voc(xml)) for img, xml in sar_chips(shared_root() / "data" / "sar-chips")]
    waters = [sar_water(img, pixel_size_m=pixel_size_m) for _, img, _ in chips]
    seas = [sea_clutter((1024, 1024), seed) for seed in SAR_CLUTTER_SEEDS]
    grid, table, false_rate = [], [], []
    # The hits depend on k and the windows only; the grouping settings are tried on the same hits.
    for k, (g, b) in itertools.product(SAR_GRID["k"], SAR_GRID["windows_m"]):
        base = CfarParams(k=k, guard_m=g, background_m=b)
        chip_hits = [cfar_hits_reference(img, pixel_size_m=pixel_size_m, water=w, params=base)
                     for (_, img, _), w in zip(chips, waters, strict=True)]
        sea_hits = [cfar_hits_reference(sea, pixel_size_m=pixel_size_m, params=base) for sea in seas]
        for gap, mp, blob in itertools.product(SAR_GRID["cluster_gap_px"], SAR_GRID["min_pixels"],
                                               SAR_GRID["blob_pixels"]):
            p = dataclasses.replace(base, cluster_gap_px=gap, min_pixels=mp, blob_pixels=blob)
            grid.append(p)
            table.append([score(targets_from_hits(img, *h, pixel_size_m=pixel_size_m, params=p), tru,
                                pixel_size_m=pixel_size_m) for (_, img, tru), h in zip(chips, chip_hits, strict=True)])
            false_rate.append(float(np.mean([len(targets_from_hits(sea, *h, pixel_size_m=pixel_size_m, params=p))
                                             for sea, h in zip(seas, sea_hits, strict=True)])))
    admissible = [j for j in range(len(grid)) if false_rate[j] <= SAR_MAX_FALSE_PER_IMAGE]

    l50: dict[int, float] = {}

    def best(exclude: int | None) -> int:
        pooled = {j: sum((table[j][i] for i in range(len(chips)) if i != exclude), Scores(0, 0, 0)).f1
                  for j in admissible}
        for j in sorted(admissible, key=lambda j: (-pooled[j], j)):
            if j not in l50:
                l50[j] = simulated_sar_l50(grid[j])
            if l50[j] <= SAR_MAX_SIMULATED_L50_M:
                return j
        raise ValueError("no CFAR setting passes the false-alarm and simulated-recall bounds")

    held = Scores(0, 0, 0)
    per_chip = {}
    for i, (name, _, _) in enumerate(chips):
        j = best(i)
        held = held + table[j][i]
        per_chip[name] = {**table[j][i].as_dict(), "chosen": dataclasses.asdict(grid[j])}
    final = best(None)
    return {"held_out": held.as_dict(), "per_chip": per_chip, "chosen_on_all": dataclasses.asdict(grid[final]),
            "all_chips_with_chosen": sum(table[final], Scores(0, 0, 0)).as_dict(),
            "false_targets_per_clutter_image": false_rate[final], "simulated_l50_m": round(l50[final], 1),
            "simulated_checks": f"{len(l50)} settings simulated, {sum(v > SAR_MAX_SIMULATED_L50_M for v in l50.values())} rejected",
            "admissible": f"{len(admissible)} of {len(grid)} grid points"}


def load_maps(maps: Path, ports: list[LabelledPort]) -> dict[str, np.ndarray]:
    """The held-out probability maps that ``--lopo --maps`` saved, by port name."""
    return {p.name: np.load(maps / f"{p.name}.npy").astype(np.float32) for p in ports}


POST_GRID = {"threshold": (0.5, 0.7, 0.8, 0.9, 0.95, 0.97), "min_pixels": (2, 4, 8, 12, 16)}
CENTRE_POST_GRID = {"centre_threshold": (0.2, 0.3, 0.4, 0.5, 0.6), "min_pixels": (1, 3, 6, 8)}


def select_postprocessing(maps: Path, cache: Path | None = None) -> dict:
    """Choose the probability threshold and minimum size on held-out maps (from ``--lopo --maps``); for the maps
    of a network with a centre output (``--centres``, whose ``<port>.centre.npy`` lie beside them), the centre
    threshold and minimum size of :func:`~routewatch.detect.optical.detections_from_centres` instead.

    Nested leave-one-port-out: for each port, the grid point best on the other ports' held-out maps is scored on
    it, which estimates the whole recipe on an unseen port; the point best on all maps is the shipped setting.
    """
    import itertools

    ports = load_ports(cache)
    probs = load_maps(maps, ports)
    if all((maps / f"{p.name}.centre.npy").is_file() for p in ports):
        centres = {p.name: np.load(maps / f"{p.name}.centre.npy").astype(np.float32) for p in ports}
        grid = [OpticalParams(centre_threshold=t, min_pixels=m)
                for t, m in itertools.product(*CENTRE_POST_GRID.values())]
        table = [[score_centres(p, probs[p.name], centres[p.name], g) for p in ports] for g in grid]
    else:
        grid = [OpticalParams(threshold=t, min_pixels=m) for t, m in itertools.product(*POST_GRID.values())]
        table = [[score_probability(p, probs[p.name], g) for p in ports] for g in grid]

    def best(exclude: int | None) -> int:
        pooled = [sum((row[i] for i in range(len(ports)) if i != exclude), Scores(0, 0, 0)).f1 for row in table]
        return int(np.argmax(pooled))

    held, per_port = Scores(0, 0, 0), {}
    for i, p in enumerate(ports):
        j = best(i)
        held = held + table[j][i]
        per_port[p.name] = {**table[j][i].as_dict(), "chosen": grid[j].__dict__}
    final = best(None)
    return {"held_out": held.as_dict(), "per_port": per_port, "chosen_on_all": grid[final].__dict__,
            "default_setting_held_out": sum(table[grid.index(OpticalParams())], Scores(0, 0, 0)).as_dict()}


def detection_outcomes(ports: list[LabelledPort], probs: dict[str, np.ndarray],
                       params: OpticalParams = OpticalParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth length m, detected, port index) for every labelled ship, detected meaning matched under the xView3
    rule by the post-processed probability map of its port."""
    from routewatch.detect.evaluate import match_objects

    lengths, hits, where = [], [], []
    for k, port in enumerate(ports):
        dets = detections_from_probability(probs[port.name], pixel_size_m=port.pixel_size_m, params=params)
        found = {j for _, j in match_objects(dets, port.truth, pixel_size_m=float(np.mean(port.pixel_size_m)))}
        for j, t in enumerate(port.truth):
            if t.length_m is not None:
                lengths.append(t.length_m)
                hits.append(j in found)
                where.append(k)
    return np.array(lengths), np.array(hits, bool), np.array(where)


def detection_curve(maps: Path, cache: Path | None = None, resamples: int = 200) -> dict:
    """Fit the optical detector's detection probability by vessel length to held-out maps (from ``--lopo
    --maps``), with 90 % intervals from resampling whole ports (ships of one port are not independent)."""
    from routewatch.sources.imagery.looks import fit_detection_model

    ports = load_ports(cache)
    lengths, hits, where = detection_outcomes(ports, load_maps(maps, ports))
    fit = fit_detection_model(lengths, hits)
    rng = np.random.default_rng(SEED)
    boot = []
    for _ in range(resamples):
        idx = np.concatenate([np.flatnonzero(where == k) for k in rng.integers(0, len(ports), len(ports))])
        if hits[idx].any() and not hits[idx].all():
            boot.append(fit_detection_model(lengths[idx], hits[idx]))
    interval = {k: [round(float(v), 3) for v in np.percentile([getattr(b, k) for b in boot], [5, 95])]
                for k in ("l50_m", "scale_m", "p_max")}
    bins = {}
    for lo, hi in ((0, 75), (75, 125), (125, 175), (175, 225), (225, 1000)):
        sel = (lengths >= lo) & (lengths < hi)
        bins[f"{lo}-{hi} m"] = {"ships": int(sel.sum()), "recall": round(float(hits[sel].mean()), 3) if sel.any()
                                else None}
    return {"fit": dataclasses.asdict(fit), "interval_90": interval, "ships": int(lengths.size),
            "recall": round(float(hits.mean()), 3), "recall_by_length": bins}


def draw_figures(folder: Path) -> dict[str, dict]:
    """Score the packaged detectors on every shared port and chip, and draw one picture each."""
    from routewatch.detect.evaluate import load_gray, load_voc, render_figure, sar_chips
    from routewatch.detect.optical import detect_optical
    from routewatch.detect.sar import detect_sar
    from routewatch.detect.water import sar_water

    results: dict[str, dict] = {}
    total = Scores(0, 0, 0)
    for port in load_ports():
        dets = detect_optical(port.bands, pixel_size_m=port.pixel_size_m)
        s = score(dets, port.truth, pixel_size_m=float(np.mean(port.pixel_size_m)))
        total = total + s
        results[port.name] = s.as_dict()
        rgb = np.stack([port.bands[b] for b in ("red", "green", "blue")], axis=-1)
        render_figure(rgb, port.truth, dets, folder / f"eval_{port.name}.png")
    results["overall"] = total.as_dict()
    sar_total = Scores(0, 0, 0)
    tiles = []
    for img_path, xml in sar_chips(shared_root() / "data" / "sar-chips"):
        img, tru = load_gray(img_path), load_voc(xml)
        dets = detect_sar(img, pixel_size_m=10.0, water=sar_water(img, pixel_size_m=10.0))
        s = score(dets, tru, pixel_size_m=10.0)
        sar_total = sar_total + s
        results[f"sar:{img_path.stem}"] = s.as_dict()
        tiles.append((img, tru, dets))
    results["sar_overall"] = sar_total.as_dict()
    from PIL import Image

    parts = []
    for i, (img, tru, dets) in enumerate(tiles):
        tmp = folder / f".tile{i}.png"
        render_figure(np.stack([img] * 3, axis=-1), tru, dets, tmp, max_width=160)
        parts.append(np.asarray(Image.open(tmp).convert("RGB")))
        tmp.unlink()
    rows = [np.concatenate(parts[i : i + 4], axis=1) for i in range(0, len(parts), 4) if len(parts[i : i + 4]) == 4]
    if rows:
        sheet = Image.fromarray(np.concatenate(rows, axis=0))
        # octree keeps the few red truth boxes that median-cut merges into the grey speckle
        sheet.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(folder / "eval_sar_chips.png", optimize=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lopo", action="store_true", help="leave-one-port-out validation instead of the final model")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--width", type=int, default=16, help="channels of the network's first level (shipped: 16)")
    ap.add_argument("--paste", type=float, default=0.0,
                    help="chance that a training crop gets ships from elsewhere pasted beside its quays (shipped: 0)")
    ap.add_argument("--crop", type=int, default=CROP, help=f"training crop side in pixels (shipped: {CROP})")
    ap.add_argument("--shore", type=float, default=0.0,
                    help="share of training crops centred on the water's edge, where quays fire: 0-0.4 (shipped: 0)")
    ap.add_argument("--centres", action="store_true",
                    help="a second output that learns ship centres, so ships side by side come apart (shipped: off)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--report", type=Path, default=None, help="write the scores as JSON here")
    ap.add_argument("--cache", type=Path, default=None, help="read the ports from this pickle instead of ../shared")
    ap.add_argument("--jobs", type=int, default=1, help="folds trained at once (--lopo), one thread each when > 1")
    ap.add_argument("--maps", type=Path, default=None, help="(--lopo) save held-out probability maps here")
    ap.add_argument("--device", default="cpu", help="(--lopo) torch device for the folds, e.g. cuda")
    ap.add_argument("--select-post", type=Path, default=None, help="choose post-processing on held-out maps here")
    ap.add_argument("--figures", type=Path, default=None, help="draw truth and detections per port/chip here")
    ap.add_argument("--sar", action="store_true", help="choose the SAR CFAR settings, leave-one-chip-out")
    ap.add_argument("--detection-curve", type=Path, default=None,
                    help="fit detection probability by vessel length to the held-out maps here")
    args = ap.parse_args(argv)
    try:
        check_recipe(args.crop, args.shore, args.paste, args.centres)
    except ValueError as exc:
        ap.error(str(exc))
    recipe = {"steps": args.steps, "width": args.width, "paste": args.paste, "crop": args.crop, "shore": args.shore,
              "centres": args.centres, "seed": args.seed}
    results: dict[str, dict] = {}
    if args.select_post is not None:
        results = select_postprocessing(args.select_post, args.cache)
        print(json.dumps({k: v for k, v in results.items() if k != "per_port"}, indent=1))
    elif args.detection_curve is not None:
        results = detection_curve(args.detection_curve, args.cache)
        print(json.dumps(results, indent=1))
    elif args.figures is not None:
        results = draw_figures(args.figures)
        print(json.dumps(results["overall"], indent=1))
    elif args.sar:
        results = sar_selection()
        print(json.dumps({k: v for k, v in results.items() if k != "per_chip"}, indent=1))
    elif args.lopo:
        n = len(load_ports(args.cache))
        folds = [(args.cache, i, 1 if args.jobs > 1 else 2, args.maps, args.device, recipe) for i in range(n)]
        if args.jobs > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(args.jobs) as pool:
                done = pool.map(_fold, folds)
        else:
            done = [_fold(f) for f in folds]
        total = Scores(0, 0, 0)
        for name, d in done:
            s = Scores(d["tp"], d["fp"], d["fn"], d["length_errors_m"], d["near_tp"], d["near_fp"], d["near_fn"])
            total = total + s
            results[name] = {k: v for k, v in d.items() if k != "length_errors_m"}
            print(f"  held out {name}: P {s.precision:.3f} R {s.recall:.3f} F1 {s.f1:.3f} "
                  f"length MAE {s.length_mae_m or float('nan'):.1f} m", flush=True)
        results["overall"] = total.as_dict()
        print(f"overall held-out: F1 {total.f1:.3f} length MAE {total.length_mae_m or float('nan'):.1f} m")
    else:
        ports = load_ports(args.cache)
        net = train_net(ports, **recipe)
        export_onnx(net, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
        total = Scores(0, 0, 0)
        for p in ports:
            s = evaluate_port(p, args.out)
            total = total + s
            results[p.name] = s.as_dict()
        results["overall"] = total.as_dict()
        print(f"training-set F1 {total.f1:.3f} (optimistic; see --lopo for unseen ports)")
    if args.report:
        args.report.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
