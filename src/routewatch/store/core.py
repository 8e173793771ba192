"""The ``Store``: canonical records in SQL, written as idempotent upserts, read back as model records or frames.

Every write method takes an optional ``conn``: without it the write is its own transaction; with a connection from
``store.transaction()`` several writes land together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Boolean, Connection, Engine, Float, Select, Table, delete, event, func, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.sql.elements import ColumnElement

from routewatch.model import (
    Activity,
    AggregateObservation,
    Evidence,
    Look,
    Route,
    Scene,
    Sighting,
    Site,
    Trip,
    Vessel,
    Visit,
    ensure_utc,
)
from routewatch.store import convert, frames
from routewatch.store import schema as t
from routewatch.store.engine import WRITE_OPTION, make_engine, upgrade

if TYPE_CHECKING:
    import polars as pl

    from routewatch.watchlist import Watchlist

CHUNK = 10_000  # rows per executemany batch
ID_CHUNK = 5_000  # ids per IN (...) query (well under SQLite's 32,766 parameters)
_R = TypeVar("_R")
BBox = tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat in WGS84 degrees


@dataclass(frozen=True, slots=True)
class Failure:
    """A recorded failure of one input in one stage (the run went on without it)."""

    id: int
    stage: str
    path: str
    message: str
    created: datetime


_WROTE = "routewatch_wrote"
_DML = ("INSERT", "UPDATE", "DELETE")


def _note_write(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
    """Mark the connection when a statement changed rows (rowcount -1: the driver does not say, so assume so)."""
    if statement.lstrip()[:6].upper() in _DML and cursor.rowcount != 0:
        conn.info[_WROTE] = True


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _unique_by_id(records: Iterable[Any], key: Callable[[Any], Any]) -> list[Any]:
    """Last one wins when a batch repeats an id (an upsert of the same id twice is one upsert)."""
    return list({key(r): r for r in records}.values())


def _bulk(conn: Connection, stmt: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Execute ``stmt`` for many rows through the DBAPI's executemany, in chunks.

    SQLAlchemy's own executemany processes every parameter of every row in Python (about half of the time of a
    bulk load); here the statement is compiled once and only the columns whose type needs it (times, JSON,
    booleans) are converted, with the same bind processors SQLAlchemy would use.
    """
    if not rows:
        return
    dialect = conn.dialect
    names = list(rows[0])
    compiled = stmt.compile(dialect=dialect, column_keys=names)
    positional = compiled.positiontup is not None
    order = list(compiled.positiontup) if positional else names
    found = [(i, _processor(table.c[n].type, dialect)) for i, n in enumerate(order)]
    procs = [(i, p) for i, p in found if p is not None]
    get = itemgetter(*order)
    sql = str(compiled)
    for chunk in _chunks(rows, CHUNK):
        values = [get(r) for r in chunk] if len(order) > 1 else [(get(r),) for r in chunk]
        if procs:
            values = [_apply(v, procs) for v in values]
        conn.exec_driver_sql(sql, values if positional else [dict(zip(order, v, strict=True)) for v in values])


def _processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy would apply; none for what sqlite3 takes as is (floats, booleans)."""
    if dialect.name == "sqlite" and isinstance(type_, Float | Boolean):
        return None
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _apply(values: tuple[Any, ...], procs: list[tuple[int, Callable[[Any], Any]]]) -> tuple[Any, ...]:
    out = list(values)
    for i, p in procs:
        out[i] = p(out[i])
    return tuple(out)


class Store:
    """Open with ``Store.open(url)``; the schema is created or upgraded on open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        if not event.contains(engine, "after_cursor_execute", _note_write):
            event.listen(engine, "after_cursor_execute", _note_write)

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and migrate) the store at ``url``: ``sqlite:///path.sqlite`` or ``postgresql+psycopg://...``."""
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a write transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            conn.info[_WROTE] = False
            yield conn
            # only when a row changed (an upsert of what is there, or an empty batch, is no change for a reader);
            # the last statement, so that concurrent writers wait on this one row only while committing
            if conn.info.get(_WROTE):
                conn.execute(t.store_state.update().values(version=t.store_state.c.version + 1))

    def version(self) -> int:
        """A number that every committed write raises: one cheap query tells a reader whether anything changed
        (the dashboard rebuilds its snapshot on it), for PostgreSQL as for SQLite."""
        with self.engine.connect() as c:
            return int(c.execute(select(t.store_state.c.version)).scalar_one())

    @contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.transaction() as own:
                yield own

    # ---- generic upserts -------------------------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        return (pg_dialect if self.dialect == "postgresql" else sqlite_dialect).insert(table)

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]], key: str,
                conflict: Sequence[str] | None = None) -> set[Any]:
        """Insert or update ``rows`` by primary key; return the keys that were already stored."""
        if not rows:
            return set()
        existing = self._existing(conn, table.c[key], [r[key] for r in rows])
        conflict = list(conflict or [c.name for c in table.primary_key.columns])
        stmt = self._insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in conflict}
        _bulk(conn, stmt.on_conflict_do_update(index_elements=conflict, set_=updates), table, rows)
        return existing

    def _existing(self, conn: Connection, column: Any, keys: list[Any]) -> set[Any]:
        found: set[Any] = set()
        if conn.execute(select(func.count()).select_from(column.table)).scalar_one() == 0:
            return found
        for chunk in _chunks(keys, ID_CHUNK):
            found.update(conn.execute(select(column).where(column.in_(list(chunk)))).scalars())
        return found

    def _write_links(self, conn: Connection, kind: str, owners: list[tuple[str, Sequence[str]]],
                     replace: set[str]) -> None:
        """Record which evidence each owner rests on, replacing the links of owners that were already stored."""
        link = t.evidence_links
        for chunk in _chunks(sorted(replace), ID_CHUNK):
            conn.execute(delete(link).where(link.c.owner_kind == kind, link.c.owner_id.in_(list(chunk))))
        rows = [
            {"owner_kind": kind, "owner_id": owner, "evidence_id": ev, "position": i}
            for owner, ids in owners
            for i, ev in enumerate(dict.fromkeys(ids))
        ]
        _bulk(conn, self._insert(link).on_conflict_do_nothing(), link, rows)

    def _add_linked(self, table: Table, kind: str, records: Iterable[Any], to_row: Callable[[Any], dict[str, Any]],
                    conn: Connection | None, key: Callable[[Any], str] = lambda r: r.id) -> int:
        items = _unique_by_id(records, key)
        rows = [to_row(r) for r in items]
        with self._writing(conn) as c:
            existing = self._upsert(c, table, rows, "id", conflict=["route", "as_of"] if kind == "activity" else None)
            self._write_links(c, kind, [(key(r), r.evidence_ids) for r in items], existing)
        return len(items) - len(existing)

    def _links(self, conn: Connection, kind: str, owners: Select[Any] | None = None) -> dict[str, tuple[str, ...]]:
        link = t.evidence_links
        q = select(link.c.owner_id, link.c.evidence_id).where(link.c.owner_kind == kind)
        if owners is not None:
            q = q.where(link.c.owner_id.in_(owners))
        out: dict[str, list[str]] = {}
        for owner, ev in conn.execute(q.order_by(link.c.owner_id, link.c.position)):
            out.setdefault(owner, []).append(ev)
        return {k: tuple(v) for k, v in out.items()}

    def _read_linked(self, q: Select[Any], kind: str,
                     from_row: Callable[[Any, tuple[str, ...]], _R]) -> list[_R]:
        """Records from the rows of ``q`` (a SELECT of a whole table with an ``id`` column), each with its evidence
        ids in link order, read in one connection."""
        with self.engine.connect() as c:
            links = self._links(c, kind, q.with_only_columns(q.selected_columns.id))
            return [from_row(r, links.get(r.id, ())) for r in c.execute(q)]

    # ---- watchlist -------------------------------------------------------------------------------------------

    def upsert_watchlist(self, watchlist: Watchlist, conn: Connection | None = None,
                         added_by: str = t.ADDED_BY_WATCHLIST) -> dict[str, int]:
        """Store the watchlist's sites, routes and vessels (upsert by key); return how many of each were new.
        ``added_by`` records where they came from (``api`` for the web API's additions, see :meth:`sync_watchlist`)."""
        added = {}
        with self._writing(conn) as c:
            for name, table, rows in self._watchlist_rows(watchlist):
                rows = [{**r, "added_by": added_by} for r in rows]
                added[name] = len(rows) - len(self._upsert(c, table, rows, "key"))
        return added

    def sync_watchlist(self, watchlist: Watchlist, owner: str,
                       clashes: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
        """Make the store follow a watchlist file: upsert its entries under ``owner`` (``watchlist:<file id>``),
        and remove the sites, routes and vessels this file brought earlier that it no longer holds. Entries of
        other files sharing the store, of the web API, and from before the ``added_by`` column are not removed,
        nor taken over: a key another file brought keeps that file's definition (listed in ``clashes``).
        Observations at a removed site stay stored; they are simply no longer analysed. Returns the keys removed."""
        import dataclasses

        removed: dict[str, list[str]] = {}
        with self._writing(None) as c:
            theirs: dict[str, set[str]] = {}
            for name, table, keep in (("sites", t.sites, watchlist.sites), ("routes", t.routes, watchlist.routes),
                                      ("vessels", t.vessels, watchlist.vessels)):
                rows = c.execute(select(table.c.key).where(table.c.added_by.like(f"{t.ADDED_BY_WATCHLIST}:%"),
                                                            table.c.added_by != owner)).scalars()
                theirs[name] = {k for k in rows if k in keep}
                if theirs[name] and clashes is not None:
                    clashes[name] = sorted(theirs[name])
            mine = dataclasses.replace(
                watchlist, sites={k: v for k, v in watchlist.sites.items() if k not in theirs["sites"]},
                routes={k: v for k, v in watchlist.routes.items() if k not in theirs["routes"]},
                vessels={k: v for k, v in watchlist.vessels.items() if k not in theirs["vessels"]})
            self.upsert_watchlist(mine, conn=c, added_by=owner)
            for name, table, keep in (("sites", t.sites, watchlist.sites), ("routes", t.routes, watchlist.routes),
                                      ("vessels", t.vessels, watchlist.vessels)):
                stale = [k for k in c.execute(select(table.c.key).where(
                    table.c.added_by == owner)).scalars() if k not in keep]
                for chunk in _chunks(stale, ID_CHUNK):
                    c.execute(delete(table).where(table.c.key.in_(list(chunk))))
                if stale:
                    removed[name] = sorted(stale)
        return removed

    @staticmethod
    def _watchlist_rows(watchlist: Watchlist) -> list[tuple[str, Table, list[dict[str, Any]]]]:
        return [("sites", t.sites, [convert.site_row(x) for x in watchlist.sites.values()]),
                ("routes", t.routes, [convert.route_row(x) for x in watchlist.routes.values()]),
                ("vessels", t.vessels, [convert.vessel_row(x) for x in watchlist.vessels.values()])]

    def sites(self) -> dict[str, Site]:
        with self.engine.connect() as c:
            return {r.key: convert.site_from(r) for r in c.execute(select(t.sites).order_by(t.sites.c.key))}

    def routes(self) -> dict[str, Route]:
        with self.engine.connect() as c:
            return {r.key: convert.route_from(r) for r in c.execute(select(t.routes).order_by(t.routes.c.key))}

    def vessels(self) -> dict[str, Vessel]:
        with self.engine.connect() as c:
            return {r.key: convert.vessel_from(r) for r in c.execute(select(t.vessels).order_by(t.vessels.c.key))}

    def sites_in_bbox(self, box: BBox) -> list[str]:
        """Keys of sites whose bounding box meets ``box`` (spatial index: R*Tree on SQLite, GiST on PostGIS)."""
        return self._keys_in_bbox("sites", "key", "site_rtree", box)

    def _bbox_clause(self, table: str, rtree: str, box: BBox) -> ColumnElement[bool]:
        x0, y0, x1, y1 = (float(v) for v in box)
        params = {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
        if self.dialect == "postgresql":
            sql = f"{table}.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        else:
            sql = (f"{table}.rowid IN (SELECT id FROM {rtree} WHERE max_lon >= :x0 AND min_lon <= :x1 "
                   f"AND max_lat >= :y0 AND min_lat <= :y1)")
        return text(sql).bindparams(**params)  # type: ignore[return-value]

    def _keys_in_bbox(self, table: str, key: str, rtree: str, box: BBox) -> list[str]:
        tab = t.metadata.tables[table]
        q = select(tab.c[key]).where(self._bbox_clause(table, rtree, box)).order_by(tab.c[key])
        with self.engine.connect() as c:
            return list(c.execute(q).scalars())

    # ---- evidence and observations ---------------------------------------------------------------------------

    def add_evidence(self, items: Iterable[Evidence], conn: Connection | None = None) -> int:
        rows = [convert.evidence_row(e) for e in _unique_by_id(items, lambda e: e.id)]
        with self._writing(conn) as c:
            return len(rows) - len(self._upsert(c, t.evidence, rows, "id"))

    def evidence(self, ids: Iterable[str]) -> dict[str, Evidence]:
        """The stored evidence among ``ids`` (ids not stored are simply absent)."""
        wanted = sorted(set(ids))
        out: dict[str, Evidence] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(wanted, ID_CHUNK):
                for r in c.execute(select(t.evidence).where(t.evidence.c.id.in_(list(chunk)))):
                    out[r.id] = convert.evidence_from(r)
        return out

    def add_scenes(self, items: Iterable[Scene], conn: Connection | None = None) -> int:
        rows = [convert.scene_row(s) for s in _unique_by_id(items, lambda s: s.id)]
        with self._writing(conn) as c:
            return len(rows) - len(self._upsert(c, t.scenes, rows, "id"))

    def remove_scenes(self, ids: Iterable[str], conn: Connection | None = None) -> int:
        """Delete scenes with their looks (and those looks' sightings): a scene whose files were moved and added
        again under their new path, so that one acquisition is not two scenes, one of them unreadable."""
        keys = sorted(set(ids))
        if not keys:
            return 0
        with self._writing(conn) as c:
            self.remove_looks(self.scene_looks(keys, conn=c), conn=c)
            return int(c.execute(delete(t.scenes).where(t.scenes.c.id.in_(keys))).rowcount or 0)

    def scenes(self, sensor: str | None = None, since: datetime | None = None, until: datetime | None = None,
               bbox: BBox | None = None) -> list[Scene]:
        """Scenes acquired in [since, until] (inclusive), optionally of one sensor or meeting a WGS84 box."""
        s = t.scenes
        q = select(s).order_by(s.c.acquired, s.c.id)
        if sensor is not None:
            q = q.where(s.c.sensor == sensor)
        if since is not None:
            q = q.where(s.c.acquired >= ensure_utc(since))
        if until is not None:
            q = q.where(s.c.acquired <= ensure_utc(until))
        if bbox is not None:
            q = q.where(self._bbox_clause("scenes", "scene_rtree", bbox))
        with self.engine.connect() as c:
            return [convert.scene_from(r) for r in c.execute(q)]

    def add_looks(self, items: Iterable[Look], conn: Connection | None = None) -> int:
        return self._add_linked(t.looks, "look", items, convert.look_row, conn)

    def simulated_counts(self, sites: Iterable[str], until: datetime) -> tuple[int, int]:
        """How many simulated sightings and looks the store holds at these sites up to ``until``: a result that
        rests on them must say so wherever it is shown (one count each, found through the (site, time) index)."""
        keys = sorted(set(sites))
        if not keys:
            return 0, 0
        until = ensure_utc(until)
        with self.engine.connect() as c:
            out = []
            for table in (t.sightings, t.looks):
                q = select(func.count()).select_from(table).where(
                    table.c.site.in_(keys), table.c.time <= until, table.c.simulated.is_(True))
                out.append(int(c.execute(q).scalar_one()))
        return out[0], out[1]

    def looks(self, site: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> list[Look]:
        """Looks at ``site`` (all sites when None) with time in [since, until] (inclusive), oldest first."""
        q = select(t.looks).where(*frames.look_filters(site, since, until)).order_by(t.looks.c.time, t.looks.c.id)
        return self._read_linked(q, "look", convert.look_from)

    def add_sightings(self, items: Iterable[Sighting], conn: Connection | None = None) -> int:
        return self._add_linked(t.sightings, "sighting", items, convert.sighting_row, conn)

    def remove_look_sightings(self, looks: Iterable[Look], keep: Iterable[str] = (),
                              conn: Connection | None = None) -> int:
        """Delete the stored sightings of these looks (and their evidence links) except those in ``keep``; return
        how many went. A look written again (a scene detected again) must not keep sightings its new result lacks.
        A look's sightings are at its site and time, so the (site, time) index finds them without a table scan."""
        s = t.sightings
        kept = set(keep)
        with self._writing(conn) as c:
            stale: list[str] = []
            for lk in _unique_by_id(looks, lambda x: x.id):
                q = select(s.c.id).where(s.c.site == lk.site, s.c.time == ensure_utc(lk.time), s.c.look_id == lk.id)
                stale.extend(i for i in c.execute(q).scalars() if i not in kept)
            return self.remove_sightings(stale, conn=c)

    def remove_sightings(self, ids: Iterable[str], conn: Connection | None = None) -> int:
        """Delete sightings by id, with their evidence links; return how many ids were given."""
        s, link = t.sightings, t.evidence_links
        ids = list(dict.fromkeys(ids))
        with self._writing(conn) as c:
            for chunk in _chunks(ids, ID_CHUNK):
                c.execute(delete(link).where(link.c.owner_kind == "sighting", link.c.owner_id.in_(list(chunk))))
                c.execute(delete(s).where(s.c.id.in_(list(chunk))))
        return len(ids)

    def scenes_at(self, uri: str) -> list[Scene]:
        """The stored scenes read from this file or folder (any time)."""
        with self.engine.connect() as c:
            return [convert.scene_from(r) for r in c.execute(select(t.scenes).where(t.scenes.c.uri == uri))]

    def scene(self, scene_id: str) -> Scene | None:
        """One stored scene by id, or None."""
        with self.engine.connect() as c:
            row = c.execute(select(t.scenes).where(t.scenes.c.id == scene_id)).first()
        return convert.scene_from(row) if row is not None else None

    def scene_looks(self, scene_ids: Iterable[str], conn: Connection | None = None) -> list[Look]:
        """The looks made from these scenes (each look names its scene)."""
        keys = sorted(set(scene_ids))
        out: list[Look] = []
        with (nullcontext(conn) if conn is not None else self.engine.connect()) as c:
            for chunk in _chunks(keys, ID_CHUNK):
                out += [convert.look_from(r, ()) for r in c.execute(select(t.looks).where(t.looks.c.scene_id.in_(
                    list(chunk))))]
        return out

    def remove_looks(self, looks: Iterable[Look], conn: Connection | None = None) -> int:
        """Delete looks with their sightings and evidence links (a look that should not have been made: a second
        window of one acquisition); return how many looks were given."""
        lk, link = t.looks, t.evidence_links
        items = _unique_by_id(looks, lambda x: x.id)
        with self._writing(conn) as c:
            self.remove_look_sightings(items, conn=c)
            for chunk in _chunks([x.id for x in items], ID_CHUNK):
                c.execute(delete(link).where(link.c.owner_kind == "look", link.c.owner_id.in_(list(chunk))))
                c.execute(delete(lk).where(lk.c.id.in_(list(chunk))))
        return len(items)

    def sightings(self, site: str | None = None, vessel: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[Sighting]:
        """Sightings whose period [time, time_end or time] meets [since, until], oldest first."""
        s = t.sightings
        q = select(s).where(*frames.sighting_filters(site, vessel, since, until)).order_by(s.c.time, s.c.id)
        return self._read_linked(q, "sighting", convert.sighting_from)

    def add_aggregates(self, items: Iterable[AggregateObservation], conn: Connection | None = None) -> int:
        return self._add_linked(t.aggregates, "aggregate", items, convert.aggregate_row, conn)

    def aggregates(self, scope: str | None = None) -> list[AggregateObservation]:
        a = t.aggregates
        q = select(a).order_by(a.c.start_time, a.c.id)
        if scope is not None:
            q = q.where(a.c.scope == scope)
        return self._read_linked(q, "aggregate", convert.aggregate_from)

    # ---- columnar reads ----------------------------------------------------------------------------------------

    def sightings_frame(self, since: datetime | None = None, until: datetime | None = None,
                        site: str | None = None, vessel: str | None = None, with_evidence: bool = False,
                        columns: Sequence[str] | None = None, reader: str | None = None,
                        sort: bool = True) -> pl.DataFrame:
        """Sightings as a polars frame, one column per model field (``columns`` picks some: fewer is faster;
        ``id`` and ``time`` always come), times ``Datetime("us", "UTC")``, sorted by (time, id) unless
        ``sort=False``. The same window as ``sightings()``. ``with_evidence`` adds ``evidence_ids`` (list of str).
        ``reader``: default ``frames.reader_for`` (connectorx for PostgreSQL; for SQLite the cursor when small,
        connectorx in a child process when large), or ``dbapi`` to force the cursor."""
        return frames.sightings_frame(self.engine, since, until, site, vessel, with_evidence, columns, reader,
                                      sort)

    def looks_frame(self, since: datetime | None = None, until: datetime | None = None,
                    site: str | None = None, with_evidence: bool = False,
                    columns: Sequence[str] | None = None, reader: str | None = None,
                    sort: bool = True) -> pl.DataFrame:
        """Looks as a polars frame (detection model as columns ``l50_m``, ``scale_m``, ``p_max``); the same
        window as ``looks()``, sorted by (time, id) unless ``sort=False``."""
        return frames.looks_frame(self.engine, since, until, site, with_evidence, columns, reader, sort)

    # ---- derived records ---------------------------------------------------------------------------------------

    def replace_derived(self, visits: Iterable[Visit], trips: Iterable[Trip], as_of: datetime, *,
                        sites: Iterable[str] | None = None, routes: Iterable[str] | None = None,
                        conn: Connection | None = None) -> tuple[int, int]:
        """Wipe and rewrite visits and trips (and their evidence links) in one transaction, recording the
        ``as_of`` they were derived for (``derived_as_of``): the tables hold one analysis, the latest run's.

        With ``sites`` and ``routes`` (a workspace's watchlist on a store shared with others) only the visits at
        those sites and the trips of those routes are replaced, and only those are written: another workspace's
        analysis is left alone."""
        v_items = _unique_by_id(visits, lambda v: v.id)
        t_items = _unique_by_id(trips, lambda x: x.id)
        site_keys = None if sites is None else sorted(set(sites))
        route_keys = None if routes is None else sorted(set(routes))
        if site_keys is not None:
            v_items = [v for v in v_items if v.site in site_keys]
        if route_keys is not None:
            t_items = [x for x in t_items if x.route in route_keys]
        with self._writing(conn) as c:
            if site_keys is None and route_keys is None:
                c.execute(delete(t.evidence_links).where(t.evidence_links.c.owner_kind.in_(["visit", "trip"])))
                c.execute(delete(t.trips))
                c.execute(delete(t.visits))
            else:
                for table, kind, column, keys in ((t.visits, "visit", t.visits.c.site, site_keys),
                                                  (t.trips, "trip", t.trips.c.route, route_keys)):
                    if keys is None:
                        continue
                    for chunk in _chunks(keys, ID_CHUNK):
                        ids = select(table.c.id).where(column.in_(list(chunk)))
                        c.execute(delete(t.evidence_links).where(t.evidence_links.c.owner_kind == kind,
                                                                 t.evidence_links.c.owner_id.in_(ids)))
                        c.execute(delete(table).where(column.in_(list(chunk))))
            for table, kind, items, to_row in ((t.visits, "visit", v_items, convert.visit_row),
                                               (t.trips, "trip", t_items, convert.trip_row)):
                _bulk(c, table.insert(), table, [to_row(x) for x in items])
                self._write_links(c, kind, [(x.id, x.evidence_ids) for x in items], set())
            c.execute(delete(t.derived_runs).where(t.derived_runs.c.name == "visits_trips"))
            c.execute(t.derived_runs.insert().values(
                name="visits_trips", as_of=ensure_utc(as_of), written_at=datetime.now(UTC),
                visits=len(v_items), trips=len(t_items),
            ))
        return len(v_items), len(t_items)

    def derived_as_of(self) -> datetime | None:
        """The ``as_of`` of the analysis whose visits and trips the store holds (None before any analysis)."""
        with self.engine.connect() as c:
            return c.execute(
                select(t.derived_runs.c.as_of).where(t.derived_runs.c.name == "visits_trips")
            ).scalar_one_or_none()

    def visits(self, site: str | None = None, vessel: str | None = None) -> list[Visit]:
        v = t.visits
        q = select(v).order_by(v.c.start_time, v.c.id)
        if site is not None:
            q = q.where(v.c.site == site)
        if vessel is not None:
            q = q.where(v.c.vessel == vessel)
        return self._read_linked(q, "visit", convert.visit_from)

    def trips(self, route: str | None = None) -> list[Trip]:
        tr = t.trips
        q = select(tr).order_by(tr.c.depart, tr.c.id)
        if route is not None:
            q = q.where(tr.c.route == route)
        return self._read_linked(q, "trip", convert.trip_from)

    def add_activities(self, items: Iterable[Activity], conn: Connection | None = None) -> int:
        """Upsert route judgements by (route, as_of): one row per route and date, so history is kept."""
        def key(a: Activity) -> str:
            return convert.activity_id(a.route, a.as_of)

        return self._add_linked(t.activities, "activity", items, convert.activity_row, conn, key=key)

    def activities(self, route: str | None = None, as_of: datetime | None = None) -> list[Activity]:
        """Stored judgements, of one route and/or one date when given (the history of every date otherwise)."""
        a = t.activities
        q = select(a).order_by(a.c.route, a.c.as_of)
        if route is not None:
            q = q.where(a.c.route == route)
        if as_of is not None:
            q = q.where(a.c.as_of == ensure_utc(as_of))
        return self._read_linked(q, "activity", convert.activity_from)

    # ---- bookkeeping -------------------------------------------------------------------------------------------

    def record_failure(self, stage: str, path: str, message: str, conn: Connection | None = None) -> None:
        """Record that a stage skipped an input; the same failure seen again by a re-run only moves its time, so
        that running a stage twice over a bad file leaves one row, not two."""
        f = t.failures
        now = datetime.now(UTC)
        with self._writing(conn) as c:
            same = (f.c.stage == stage) & (f.c.path == str(path)) & (f.c.message == message)
            if c.execute(f.update().where(same).values(created=now)).rowcount == 0:
                c.execute(f.insert(), {"stage": stage, "path": str(path), "message": message, "created": now})

    def clear_failures(self, stage: str, paths: Iterable[str], message_prefix: str | None = None,
                       conn: Connection | None = None) -> int:
        """Forget the failures of ``stage`` at ``paths`` (only those whose message starts with ``message_prefix``,
        when given): the stage has now read those inputs, so the failure list shows only what is still skipped."""
        f = t.failures
        keys = sorted({str(p) for p in paths if p})
        if not keys:
            return 0
        cond = (f.c.stage == stage) & f.c.path.in_(keys)
        if message_prefix is not None:
            cond &= func.substr(f.c.message, 1, len(message_prefix)) == message_prefix
        with self._writing(conn) as c:
            return int(c.execute(f.delete().where(cond)).rowcount or 0)

    def failures(self, stage: str | None = None) -> list[Failure]:
        f = t.failures
        q = select(f).order_by(f.c.id)
        if stage is not None:
            q = q.where(f.c.stage == stage)
        with self.engine.connect() as c:
            return [Failure(r.id, r.stage, r.path, r.message, r.created) for r in c.execute(q)]

    def record_import(self, sha256: str, path: str, kind: str, rows: int, conn: Connection | None = None) -> None:
        """Remember that a file (by content hash) was imported; re-recording updates path, rows and time."""
        row = {"sha256": sha256, "path": str(path), "kind": kind, "rows": rows, "imported_at": datetime.now(UTC)}
        with self._writing(conn) as c:
            self._upsert(c, t.imports, [row], "sha256")

    def has_import(self, sha256: str) -> bool:
        with self.engine.connect() as c:
            q = select(func.count()).select_from(t.imports).where(t.imports.c.sha256 == sha256)
            return c.execute(q).scalar_one() > 0

    def table_counts(self) -> dict[str, int]:
        """Rows per table: what a test or an operator compares before and after an import."""
        with self.engine.connect() as c:
            return {name: c.execute(select(func.count()).select_from(tab)).scalar_one()
                    for name, tab in sorted(t.metadata.tables.items())}
