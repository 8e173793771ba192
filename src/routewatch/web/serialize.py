"""Records as JSON: geometries as GeoJSON, times as ISO-8601 UTC (``Z``), enums as their values."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry


def to_json(value: Any) -> Any:
    """A JSON-safe copy of a model record (or of anything nested in one); non-finite floats become null."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseGeometry):
        return mapping(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class FastJSON(JSONResponse):
    """JSON encoded by orjson (several times faster than the standard library for the API's pages of records)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
