"""Write cloud-optimised GeoTIFFs atomically (temporary file, then rename), so no half-written image is ever read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio


def write_cog(path: str | Path, arrays: Sequence[np.ndarray], *, transform: Any = None, crs: Any = None,
              gcps: Sequence[Any] | None = None, gcps_crs: Any = None, descriptions: Sequence[str] | None = None,
              tags: Mapping[str, str] | None = None, nodata: float | None = None, blocksize: int = 256) -> Path:
    """Write bands (all the same shape and dtype) as a deflate-compressed COG with overviews.

    Either ``transform`` + ``crs`` or ``gcps`` (+ ``gcps_crs``) locate it. The file appears only once complete.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack([np.asarray(a) for a in arrays])
    count, height, width = stack.shape
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    profile: dict[str, Any] = {
        "driver": "COG", "width": width, "height": height, "count": count, "dtype": stack.dtype.name,
        "compress": "deflate", "blocksize": blocksize, "overview_resampling": "average",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if gcps:
        profile["gcps"] = list(gcps)
        profile["crs"] = gcps_crs
    else:
        profile["transform"] = transform
        profile["crs"] = crs
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(stack)
            if gcps:
                dst.gcps = (list(gcps), gcps_crs)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
