"""Columnar reads: sightings and looks as polars frames, built from the DBAPI cursor in bulk.

Building a ``Sighting`` per row costs several microseconds and the analysis runs over millions of rows, so these
readers never make a Python object per value: connectorx reads the query result straight into Arrow (about four
times faster than the cursor on SQLite, measured in benchmarks/bench_store.py), and the cursor reader (in-memory
SQLite) hands whole rows to polars. SQLite times arrive as text and are parsed by polars in one vectorised step
into ``Datetime("us", "UTC")``. Rows come sorted by (time, id) unless ``sort=False`` (a caller that
sorts by its own keys saves about a second per million rows).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import connectorx as cx
import polars as pl
from sqlalchemy import BigInteger, Column, Engine, Select, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from routewatch.model import ensure_utc
from routewatch.store import schema as t

TIME = pl.Datetime("us", "UTC")

SIGHTING_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String,
    "time": TIME,
    "time_end": TIME,
    "source_kind": pl.String,
    "site": pl.String,
    "vessel": pl.String,
    "object_kind": pl.String,
    "event": pl.String,
    "lon": pl.Float64,
    "lat": pl.Float64,
    "length_m": pl.Float64,
    "width_m": pl.Float64,
    "heading_deg": pl.Float64,
    "score": pl.Float64,
    "count": pl.Int64,
    "confidence": pl.Float64,
    "identification_confidence": pl.Float64,
    "look_id": pl.String,
    "detail": pl.String,
    "simulated": pl.Boolean,
}
LOOK_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String,
    "site": pl.String,
    "time": TIME,
    "sensor": pl.String,
    "usable_fraction": pl.Float64,
    "l50_m": pl.Float64,
    "scale_m": pl.Float64,
    "p_max": pl.Float64,
    "source_kind": pl.String,
    "scene_id": pl.String,
    "vessels_seen": pl.Int64,
    "simulated": pl.Boolean,
    "note": pl.String,
}


def look_filters(
    site: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """Looks at ``site`` with time in [since, until], both inclusive."""
    c = t.looks.c
    out = []
    if site is not None:
        out.append(c.site == site)
    if since is not None:
        out.append(c.time >= ensure_utc(since))
    if until is not None:
        out.append(c.time <= ensure_utc(until))
    return out


def sighting_filters(
    site: str | None, vessel: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """Sightings whose period [time, time_end or time] meets [since, until] (inclusive ends)."""
    c = t.sightings.c
    out = []
    if site is not None:
        out.append(c.site == site)
    if vessel is not None:
        out.append(c.vessel == vessel)
    if since is not None:
        out.append(func.coalesce(c.time_end, c.time) >= ensure_utc(since))
    if until is not None:
        out.append(c.time <= ensure_utc(until))
    return out


SMALL_SQLITE_BYTES = 64 * 1024 * 1024


def reader_for(engine: Engine) -> str:
    """``connectorx`` (Arrow straight from the server) for PostgreSQL; for a SQLite file, ``connectorx-process``
    when it is large and ``dbapi`` (the cursor) when it is small or in memory.

    connectorx is never run on SQLite inside this process: it links its own copy of SQLite, and two copies of
    SQLite in one process break each other's POSIX locks on the same file (closing one copy's file handle drops the
    other's locks), which shows up as "disk I/O error" and can corrupt a database in WAL mode. Locks are per
    process, so a short-lived child process reads the file with connectorx and hands the Arrow table back through
    a temporary IPC file; that costs about 0.3 s to start, which pays off only on large stores.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return "connectorx"
    if url.database in (None, "", ":memory:"):
        return "dbapi"
    path = Path(url.database)
    size = path.stat().st_size if path.exists() else 0
    return "connectorx-process" if size >= SMALL_SQLITE_BYTES else "dbapi"


def _connectorx_url(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return "sqlite://" + quote(str(Path(url.database or "").resolve()))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _raw(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    """For the cursor reader: PostgreSQL times as epoch microseconds, the rest as stored."""
    if dialect == "postgresql" and isinstance(column.type, t.UTCDateTime):
        micros = func.round(func.extract("epoch", column) * 1_000_000)
        return cast(micros, BigInteger).label(column.name)
    return column


def _rows_query(
    engine: Engine,
    table: Any,
    schema: dict[str, Any],
    filters: list[ColumnElement[bool]],
    columns: Sequence[str] | None,
    reader: str,
) -> tuple[Select[Any], dict[str, Any]]:
    """The SELECT for the wanted columns, and those columns' declared types."""
    names = list(schema) if columns is None else list(dict.fromkeys(["id", "time", *columns]))
    unknown = [n for n in names if n not in schema]
    if unknown:
        raise ValueError(f"unknown {table.name} columns {unknown}; known: {', '.join(schema)}")
    dialect = engine.dialect.name
    if reader == "dbapi":
        q = select(*(_raw(table.c[n], dialect) for n in names)).where(*filters)
    else:
        q = select(*(table.c[n] for n in names)).where(*filters)
    return q, {n: schema[n] for n in names}


def _effective_reader(engine: Engine, reader: str | None) -> str:
    reader = reader or reader_for(engine)
    if reader in ("connectorx", "connectorx-process") and engine.url.get_backend_name() == "sqlite":
        # never a second SQLite copy in this process (see reader_for); an in-memory database has no file to share
        return "dbapi" if engine.url.database in (None, "", ":memory:") else "connectorx-process"
    if reader not in ("connectorx", "connectorx-process", "dbapi"):
        raise ValueError(f"unknown reader {reader!r}: use connectorx, connectorx-process or dbapi")
    return reader


def _read_many(engine: Engine, queries: Sequence[tuple[Select[Any], list[str]]], reader: str) -> list[pl.DataFrame]:
    """Run SELECTs into frames with the given column names (types as the reader found them).

    connectorx on PostgreSQL runs the queries at the same time (the work is in the server and in connectorx's own
    threads); on a SQLite file one child process runs them in turn, each split by rowid over the cores, so the
    child's start-up (about 0.2 s) is paid once."""
    if reader == "connectorx":
        url = _connectorx_url(engine)

        def one(q: Select[Any], names: list[str]) -> pl.DataFrame:
            sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
            frame = pl.from_arrow(cx.read_sql(url, sql, return_type="arrow"))
            assert isinstance(frame, pl.DataFrame)
            return frame if frame.width else pl.DataFrame(schema=dict.fromkeys(names, pl.String))

        if len(queries) == 1:
            return [one(*queries[0])]
        with ThreadPoolExecutor(max_workers=len(queries)) as pool:
            jobs = [pool.submit(one, q, names) for q, names in queries]
            return [j.result() for j in jobs]
    if reader == "connectorx-process":
        sqls = []
        for q, _names in queries:
            q = q.add_columns(literal_column("rowid").label(_ROWID))
            sqls.append(str(q.compile(engine, compile_kwargs={"literal_binds": True})))
        frames = _connectorx_in_child(_connectorx_url(engine), sqls)
        return [
            f.drop(_ROWID) if f.width else pl.DataFrame(schema=dict.fromkeys(names, pl.String))
            for f, (_q, names) in zip(frames, queries, strict=True)
        ]
    out = []
    with engine.connect() as conn:
        for q, names in queries:
            result = conn.execute(q)
            rows = result.cursor.fetchall()  # the DBAPI rows: no per-value processing
            result.close()
            out.append(pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None))
    return out


_ROWID = "_routewatch_rowid"
_CHILD = (
    "import json, os, sys, connectorx as cx, pyarrow.ipc as ipc\n"
    "parts = max(1, min(os.cpu_count() or 1, 4))\n"
    "for i, sql in enumerate(json.load(sys.stdin)):\n"
    "    try:\n"
    "        t = cx.read_sql(sys.argv[1], sql, return_type='arrow', partition_on=sys.argv[3], partition_num=parts)\n"
    "    except Exception:\n"
    "        t = cx.read_sql(sys.argv[1], sql, return_type='arrow')  # e.g. an empty result: nothing to partition\n"
    "    with ipc.new_file(os.path.join(sys.argv[2], f'{i}.arrow'), t.schema) as w:\n"
    "        w.write_table(t)\n"
)


def _connectorx_in_child(url: str, sqls: Sequence[str]) -> list[pl.DataFrame]:
    """Run connectorx in a child process (see ``reader_for``) and read its Arrow IPC output, one frame per query."""
    with tempfile.TemporaryDirectory(prefix="routewatch-frame-") as tmp:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, url, tmp, _ROWID],
            input=json.dumps(list(sqls)),
            text=True,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"reading the store with connectorx failed: {done.stderr.strip()[-2000:]}")
        return [pl.read_ipc(Path(tmp) / f"{i}.arrow") for i in range(len(sqls))]


def _convert(frame: pl.DataFrame, name: str, dtype: Any) -> pl.Expr:
    """Bring a column to its declared type: times to Datetime(us, UTC), 0/1 to booleans, nulls typed."""
    col = pl.col(name)
    have = frame.schema[name]
    if dtype == TIME:
        if have == pl.String:
            return col.str.strptime(TIME, t.SQLITE_TIME_FORMAT.replace(".%f", "%.f"), strict=True)
        if have.is_integer():
            return pl.from_epoch(col, "us").dt.replace_time_zone("UTC")
        if isinstance(have, pl.Datetime):
            return (
                col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
                if have.time_zone
                else col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            )
        return col.cast(TIME)
    if have == pl.String and dtype == pl.Boolean:  # SQLite's 0/1 as text
        return col.cast(pl.Int64).cast(pl.Boolean)
    return col.cast(dtype)


LINK_NAMES = ["owner_id", "evidence_id", "position"]


def _links_query(engine: Engine, kind: str) -> Select[Any]:
    link = t.evidence_links
    owner_kind: ColumnElement[Any] = link.c.owner_kind
    if engine.dialect.name == "sqlite" and kind == "sighting":
        # Sightings own most of the links. "+owner_kind" keeps SQLite off the primary-key index: when most of the
        # table is wanted, a sequential scan beats an index walk that fetches every row by rowid (0.6 s against
        # 0.9 s per million links). For the other kinds, a small share of the table, the index stays faster.
        owner_kind = literal_column("+owner_kind")
    return select(link.c.owner_id, link.c.evidence_id, link.c.position).where(owner_kind == kind)


def _attach_evidence(frame: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    grouped = (
        links.sort("owner_id", "position")
        .group_by("owner_id", maintain_order=True)
        .agg(pl.col("evidence_id").cast(pl.String).alias("evidence_ids"))
        .rename({"owner_id": "id"})
        .with_columns(pl.col("id").cast(pl.String))
    )
    out = frame.join(grouped, on="id", how="left", maintain_order="left")
    return out.with_columns(pl.col("evidence_ids").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def _frame_with_evidence(
    engine: Engine,
    table: Any,
    schema: dict[str, Any],
    filters: list[ColumnElement[bool]],
    columns: Sequence[str] | None,
    reader: str | None,
    sort: bool,
    kind: str | None,
) -> pl.DataFrame:
    """The rows, and (with ``kind``) their evidence ids, read together (see ``_read_many``)."""
    how = _effective_reader(engine, reader)
    q, wanted = _rows_query(engine, table, schema, filters, columns, how)
    queries = [(q, list(wanted))]
    if kind is not None:
        queries.append((_links_query(engine, kind), LINK_NAMES))
    frames = _read_many(engine, queries, how)
    frame = frames[0].select(_convert(frames[0], n, d) for n, d in wanted.items())
    frame = frame.sort("time", "id") if sort else frame
    return frame if kind is None else _attach_evidence(frame, frames[1])


def sightings_frame(
    engine: Engine,
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    vessel: str | None,
    with_evidence: bool,
    columns: Sequence[str] | None = None,
    reader: str | None = None,
    sort: bool = True,
) -> pl.DataFrame:
    filters = sighting_filters(site, vessel, since, until)
    kind = "sighting" if with_evidence else None
    return _frame_with_evidence(engine, t.sightings, SIGHTING_COLUMNS, filters, columns, reader, sort, kind)


def looks_frame(
    engine: Engine,
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    with_evidence: bool,
    columns: Sequence[str] | None = None,
    reader: str | None = None,
    sort: bool = True,
) -> pl.DataFrame:
    filters = look_filters(site, since, until)
    kind = "look" if with_evidence else None
    return _frame_with_evidence(engine, t.looks, LOOK_COLUMNS, filters, columns, reader, sort, kind)
