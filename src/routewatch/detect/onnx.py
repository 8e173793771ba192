"""Plug-in hook: run a user's own ONNX ship detector and get the same :class:`Detection` records.

Three output conventions are accepted, recognised from the model's first output:

* a score map ``(1, 1, H, W)`` (probabilities, or logits with ``logits=True``; by default an output named
  ``logit`` or ``logits``, as ``python -m routewatch.detect.train`` names it, is read as logits, unless all its
  values lie in [0, 1]: then it is read as probabilities, with a warning): ships are the connected regions above
  the threshold, measured like the packaged optical detector;
* a score map and a ship-centre map ``(1, 2, H, W)`` (``train --centres``): ships are the centre peaks (above
  0.3) on the score map above the threshold, with at least ``min_pixels`` of it their own
  (:func:`~routewatch.detect.optical.detections_from_centres`);
* boxes ``(N, 5)`` or ``(1, N, 5)``: ``x0, y0, x1, y1, score`` in input pixels; length and width come from the
  box sides (heading 0 or 90 degrees, since an axis-aligned box cannot say more).

The input is ``(1, C, H, W)`` float32; ``preprocess`` turns the caller's array(s) into that (default: the image
as one channel scaled to [0, 1] by its dtype's range, or :func:`~routewatch.detect.optical.optical_features`
for a band dictionary). onnxruntime is a dependency; the model is the user's, nothing is downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from routewatch.detect.base import Detection
from routewatch.detect.optical import (
    OpticalParams,
    detections_from_maps,
    onnx_session,
    optical_features,
)

Preprocess = Callable[[np.ndarray | dict[str, np.ndarray]], np.ndarray]


def default_preprocess(data: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """A band dictionary gives the optical features; a single image becomes one [0, 1] channel."""
    if isinstance(data, dict):
        return optical_features(data)
    img = np.asarray(data)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3].mean(axis=2)
    if img.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {img.shape}")
    scale = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    return (img.astype(np.float32) / scale)[None]


@dataclass
class OnnxDetector:
    """A user's ONNX model wrapped as a detector with the same call shape as the packaged ones."""

    model_path: Path
    preprocess: Preprocess = default_preprocess
    logits: bool | None = None  # None: by the output's name (logit, logits)
    threshold: float = 0.5
    params: OpticalParams = field(default_factory=lambda: OpticalParams(threshold=0.5, min_pixels=2,
                                                                       measure_threshold=None))

    def __post_init__(self) -> None:
        self.model_path = Path(self.model_path)
        self._sess = onnx_session(self.model_path, threads=None)
        self._input = self._sess.get_inputs()[0].name  # type: ignore[attr-defined]
        self._output = self._sess.get_outputs()[0].name  # type: ignore[attr-defined]
        self._by_name = self.logits is None
        if self.logits is None:
            self.logits = self._output.lower() in ("logit", "logits")

    def __call__(
        self, data: np.ndarray | dict[str, np.ndarray], *, pixel_size_m: float, water: np.ndarray | None = None
    ) -> list[Detection]:
        x = np.asarray(self.preprocess(data), dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        out = np.asarray(self._sess.run(None, {self._input: x})[0])  # type: ignore[attr-defined]
        h, w = x.shape[2], x.shape[3]
        if out.ndim == 4:
            maps = out[0]
            as_logits = self.logits
            if as_logits and self._by_name and maps.size and np.nanmin(maps) >= 0.0 and np.nanmax(maps) <= 1.0:
                # named as logits but shaped like probabilities: read twice through the sigmoid, every pixel would be
                # over 0.5 and the image one region too long for a ship (no ships, and no word why)
                warnings.warn(f"{self.model_path}: output {self._output!r} is named as logits but every value lies "
                              "in [0, 1]: read as probabilities (give logits=True to read it as logits)", stacklevel=2)
                as_logits = False
            if as_logits:
                maps = 1.0 / (1.0 + np.exp(-maps))
            if maps.shape[1:] != (h, w) or maps.shape[0] not in (1, 2):
                raise ValueError(f"{self.model_path}: score map {out.shape} does not match the input {(h, w)}: "
                                 "expected (1, 1, H, W), or (1, 2, H, W) with a centre map")
            params = replace(self.params, threshold=self.threshold)
            return detections_from_maps(maps, pixel_size_m=pixel_size_m, water=water, params=params)
        boxes = out.reshape(-1, out.shape[-1])
        if boxes.shape[-1] < 5:
            raise ValueError(f"{self.model_path}: output shape {out.shape} is neither a score map nor (N, 5) boxes")
        dets = []
        for x0, y0, x1, y1, s in boxes[:, :5]:
            if s < self.threshold:
                continue
            r, c = (y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5
            if water is not None and not water[int(np.clip(round(r), 0, h - 1)), int(np.clip(round(c), 0, w - 1))]:
                continue
            bw, bh = abs(x1 - x0) * pixel_size_m, abs(y1 - y0) * pixel_size_m
            dets.append(Detection(row=float(r), col=float(c), length_m=float(max(bw, bh)), width_m=float(min(bw, bh)),
                                  heading_deg=0.0 if bh >= bw else 90.0, score=float(s)))
        return dets


def load_detector(model_path: str | Path, **kwargs: object) -> OnnxDetector:
    """Load a user's ONNX detector; keyword arguments as for :class:`OnnxDetector`."""
    return OnnxDetector(Path(model_path), **kwargs)  # type: ignore[arg-type]
