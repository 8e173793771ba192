"""Ship detection in SAR and optical images, measurement of the targets, and evaluation against labelled truth."""

from routewatch.detect.base import Detection, attach_lonlat

__all__ = ["Detection", "attach_lonlat"]
