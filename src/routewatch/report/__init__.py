"""Analyst surfaces that are files: the self-contained HTML report and exports (GeoJSON, KML, GeoPackage, CSV)."""

from routewatch.report.data import ReportData, gather
from routewatch.report.export import FORMATS, export
from routewatch.report.html import build_report, render_report

__all__ = ["FORMATS", "ReportData", "build_report", "export", "gather", "render_report"]
