"""Imagery sources: STAC search and windowed COG fetch, local GeoTIFF folders, looks, and the detect-site pipeline.

Modules: ``stac`` (search, signing), ``fetch`` (windowed reads, cache, resume), ``local`` (``scenes add``),
``ingest`` (scenes into the store), ``geo`` and ``sentinel1`` (affine and GCP georeferencing), ``raster``
(reading a stored scene), ``looks`` (usable fraction, detection probability), ``pipeline`` (``detect --site``).
"""
