"""AIS visits, gaps and the registry as routewatch records, and their place in the store.

An AIS visit becomes a ``Visit`` (source_kinds ``("ais",)``), one ``Sighting`` spanning it (event ``ais_visit``,
which is what the route analysis consumes) and one ``Evidence`` of kind ais naming the MMSI, the first and last
message times and the file and line of each. The vessel is the watchlist key when the MMSI (or, through the
registry, the IMO or call sign) matches; otherwise None, with the MMSI in the evidence. Ids are deterministic, so
storing the same visits twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import delete

from routewatch.analysis.visits import DEPARTURE_SEEN
from routewatch.model import Evidence, EvidenceKind, Sighting, SourceKind, Visit, stable_id
from routewatch.sources.ais.registry import also_claimed, vessel_at


def _lines(src: str, line: int) -> str:
    return f"{src}:{line}"


def visit_records(
    visits: pl.DataFrame, mmsi_vessel: Mapping[int, str], lengths: Mapping[int, float] | None = None
) -> tuple[list[Visit], list[Sighting], list[Evidence]]:
    """Model records for a visits frame from :func:`routewatch.analysis.port_visits.port_visits`."""
    lengths = lengths or {}
    out_v, out_s, out_e = [], [], []
    for r in visits.iter_rows(named=True):
        mmsi = int(r["mmsi"])
        # the identity the ship broadcast at the visit, not the latest one (see VesselLinks.at)
        vessel = vessel_at(mmsi_vessel, mmsi, r["start"], r["end"])
        # another watched identity it claimed is said, not linked: the analyst decides which hull it is
        other = also_claimed(mmsi_vessel, mmsi, vessel)
        seen = [k for k in ("entry", "exit", "stop", "gap") if r[k]]
        ev = Evidence(
            id=stable_id("ais", mmsi, r["site"], r["start"], r["end"]), kind=EvidenceKind.AIS,
            description=f"AIS MMSI {mmsi} at {r['site']}: {r['positions']} positions "
                        f"{r['start']:%Y-%m-%d %H:%M} to {r['end']:%Y-%m-%d %H:%M} UTC (seen: {', '.join(seen) or 'presence'})",
            source=r["first_source"], uri=None, observed_at=r["start"],
            attributes={"mmsi": mmsi, "first_time": r["start"].isoformat(), "last_time": r["end"].isoformat(),
                        "first": _lines(r["first_source"], r["first_line"]),
                        "last": _lines(r["last_source"], r["last_line"]), "positions": int(r["positions"]),
                        "level": int(r["level"]), "seen": seen},
        )
        sighting = Sighting(
            id=stable_id("aissight", mmsi, r["site"], r["start"]), time=r["start"], time_end=r["end"],
            source_kind=SourceKind.AIS, site=r["site"], vessel=vessel, event="ais_visit",
            length_m=lengths.get(mmsi), confidence=float(r["confidence"]),
            identification_confidence=0.95 if vessel else None, evidence_ids=(ev.id,),
            detail=f"MMSI {mmsi}; GFW-style level {r['level']}" + (f"; {DEPARTURE_SEEN}" if r["exit"] else "")
            + (f"; also broadcast the identity of {', '.join(other)}" if other else ""),
        )
        visit = Visit(
            id=stable_id("aisvisit", mmsi, r["site"], r["start"]), site=r["site"], vessel=vessel,
            start=r["start"], end=r["end"], confidence=float(r["confidence"]), sighting_ids=(sighting.id,),
            evidence_ids=(ev.id,), source_kinds=("ais",),
        )
        out_v.append(visit)
        out_s.append(sighting)
        out_e.append(ev)
    return out_v, out_s, out_e


def windowed_visits(store: Any, sightings: list[Sighting], evidence: list[Evidence],
                    mmsis: list[int]) -> tuple[list[Sighting], list[Evidence], list[str]]:
    """What a run of ``ais visits`` over some days only may write: a visit that crosses the window's edge is cut
    there, so it must not replace, nor sit beside, the same visit stored by a run that saw more of it.

    Each new visit is compared with the stored AIS visits of the same ship (MMSI, from their evidence) at the
    same site that overlap it: when a stored one is at least as long, the new one is left out; otherwise the
    stored ones it overlaps are removed and the new one written. The same visit read again (the same span) is
    written only when it saw more (a higher level, or more of entry, exit, stop and in-port gap): a run that read
    less of its approach or departure had stored it again a level lower. Returns (sightings, their evidence, ids
    of stored sightings to remove).
    """
    if not sightings:
        return [], [], []
    new_ev = {e.id: e for e in evidence}

    def saw(attrs: Mapping[str, Any] | None) -> tuple[int, int]:
        return (int(attrs.get("level", 0)), len(attrs.get("seen", ()))) if attrs else (0, 0)
    t0 = min(s.time for s in sightings)
    t1 = max(s.time_end or s.time for s in sightings)
    stored: dict[tuple[str | None, int], list[Sighting]] = {}
    olds = [w for site in sorted({s.site for s in sightings if s.site})
            for w in store.sightings(site=site, since=t0, until=t1)
            if w.event == "ais_visit" and w.source_kind == SourceKind.AIS]
    ev = store.evidence([e for w in olds for e in w.evidence_ids])
    stored_saw: dict[str, tuple[int, int]] = {}
    for w in olds:
        mmsi = next((ev[e].attributes.get("mmsi") for e in w.evidence_ids if e in ev), None)
        if mmsi is not None:
            stored.setdefault((w.site, int(mmsi)), []).append(w)
            stored_saw[w.id] = max((saw(ev[e].attributes) for e in w.evidence_ids if e in ev), default=(0, 0))
    keep: list[Sighting] = []
    remove: set[str] = set()
    for s, mmsi in zip(sightings, mmsis, strict=True):
        end = s.time_end or s.time
        overlapping = [w for w in stored.get((s.site, int(mmsi)), [])
                       if w.id not in remove and w.time <= end and (w.time_end or w.time) >= s.time]
        if any((w.time_end or w.time) - w.time >= end - s.time and (w.id != s.id or (w.time_end or w.time) > end)
               for w in overlapping):
            continue  # a stored visit saw at least as much of it
        mine = max((saw(new_ev[e].attributes) for e in s.evidence_ids if e in new_ev), default=(0, 0))
        if any(w.time == s.time and (w.time_end or w.time) == end and stored_saw.get(w.id, (0, 0)) >= mine
               for w in overlapping):
            continue  # the same visit, stored by a run that saw as much of its approach and departure
        remove.update(w.id for w in overlapping if w.id != s.id)
        keep.append(s)
    wanted = {e for s in keep for e in s.evidence_ids}
    return keep, [e for e in evidence if e.id in wanted], sorted(remove)


def reach_stored_visits(store: Any, sites: Iterable[str], since: datetime | None, until: datetime | None,
                        margin: timedelta) -> tuple[datetime | None, datetime | None]:
    """The window a run of ``ais visits`` over [since, until) must read so that a stay crossing one of its edges
    is seen whole: back to the start of a stored AIS visit that ends within ``margin`` (the longest silence a
    visit may hold) before ``since``, and on to the end of one that starts within ``margin`` after ``until``.

    Runs day by day otherwise store one port call as two visits, each cut at midnight and each of a lower level
    (the second run cannot see the entry, the first the exit); read this way, the second run finds the whole
    call, which replaces the stored part (:func:`windowed_visits`)."""
    lo, hi = since, until
    for site in sorted(set(sites)):
        near = []
        if since is not None:
            near += store.sightings(site=site, since=since - margin, until=since)
        if until is not None:
            near += store.sightings(site=site, since=until, until=until + margin)
        for w in near:
            if w.event != "ais_visit" or w.source_kind != SourceKind.AIS:
                continue
            if lo is not None and w.time < lo:
                lo = w.time
            if hi is not None and (w.time_end or w.time) > hi:
                hi = w.time_end or w.time
    return lo, hi


def gap_rows(gaps: pl.DataFrame, mmsi_vessel: Mapping[int, str]) -> tuple[list[dict[str, Any]], list[Evidence]]:
    """Rows for the ``ais_gaps`` table (cues in ``reachable_sites``) and the evidence of each gap's two ends."""
    rows, evidence = [], []
    for r in gaps.iter_rows(named=True):
        mmsi = int(r["mmsi"])
        ev = Evidence(
            id=stable_id("aisgap-ev", mmsi, r["start"], r["end"]), kind=EvidenceKind.AIS,
            description=f"AIS MMSI {mmsi} silent {r['duration_h']:.1f} h from {r['start']:%Y-%m-%d %H:%M} UTC "
                        f"({r['distance_nm']:.1f} nm apart, {r['implied_speed_kn']:.1f} kn implied)",
            source=r["source_before"], observed_at=r["start"],
            attributes={"mmsi": mmsi, "first_time": r["start"].isoformat(), "last_time": r["end"].isoformat(),
                        "before": _lines(r["source_before"], r["line_before"]),
                        "after": _lines(r["source_after"], r["line_after"])},
        )
        evidence.append(ev)
        rows.append({
            "id": stable_id("aisgap", mmsi, r["start"]), "mmsi": str(mmsi),
            "vessel": vessel_at(mmsi_vessel, mmsi, r["start"], r["end"]),
            "start_time": r["start"], "end_time": r["end"], "lon_before": r["lon_before"],
            "lat_before": r["lat_before"], "lon_after": r["lon_after"], "lat_after": r["lat_after"],
            "distance_nm": r["distance_nm"], "implied_speed_kn": r["implied_speed_kn"],
            "reachable_sites": [{"site": c["site"], "window_start": c["window_start"].isoformat(),
                                 "window_end": c["window_end"].isoformat()} for c in (r["cues"] or [])],
            "evidence_ids": [ev.id],
        })
    return rows, evidence


def registry_rows(linked: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows for ``ais_vessels`` from :func:`routewatch.sources.ais.registry.link_watchlist` output."""
    out = []
    for r in linked.iter_rows(named=True):
        out.append({
            "mmsi": str(r["mmsi"]), "imo": None if r["imo"] is None else str(r["imo"]), "name": r["name"],
            "call_sign": r["call_sign"], "length_m": r["length_m"], "beam_m": r["beam_m"],
            "ship_type": r["ship_type"], "vessel": r.get("vessel"), "first_seen": r["first_seen"],
            "last_seen": r["last_seen"],
        })
    return out


def _replace(conn, table, rows: list[dict[str, Any]], key: str) -> None:
    """Delete then insert by key in the caller's transaction: an idempotent upsert on SQLite and PostgreSQL."""
    ids = [r[key] for r in rows]
    for i in range(0, len(ids), 500):
        conn.execute(delete(table).where(table.c[key].in_(ids[i : i + 500])))
    for i in range(0, len(rows), 1000):
        conn.execute(table.insert(), rows[i : i + 1000])


def _visit_mmsi(detail: str | None) -> int | None:
    """The MMSI an AIS visit sighting's detail names (``MMSI 273210440; GFW-style level 4``)."""
    head = (detail or "").split(";", 1)[0].strip()
    return int(head[5:]) if head.startswith("MMSI ") and head[5:].isdigit() else None


def store_ais(store, *, sightings=(), evidence=(), gaps=(), vessels=(),
              replace: tuple[str, Any] | None = None, remove: Any = (), mmsis: Any = None,
              gaps_read: tuple[datetime, datetime, timedelta, Any] | None = None) -> dict[str, int]:
    """Write AIS records in one transaction, so a failure leaves the store as it was.

    ``replace`` = ("visits", site keys) or ("gaps", MMSIs): the run read all the AIS there is, so the AIS visits
    at those sites, or the gaps of those ships, that an earlier run stored and this one did not find are removed
    first; a second run with other settings replaces the first instead of adding to it. Records of other sites
    or ships (another workspace's, on a shared store) are left alone. ``remove``: sighting ids to remove in the
    same transaction (see :func:`windowed_visits`). ``mmsis`` (with ``replace=("visits", ...)``): only those ships'
    visits may go, so that workspaces watching one site on a shared store keep each other's. ``gaps_read`` =
    (start, end, reach, MMSIs): a run of ``ais gaps`` over the days [start, end) read every position of them and
    each ship's last position before them and first after (at most ``reach`` away), so a stored gap of those ships
    with an end inside the days (and its other end within reach) that the run did not find again is gone: another
    receiver's file filled it, or the run's threshold is longer.
    """
    from sqlalchemy import select

    from routewatch.store import schema

    gone_evidence: list[str] = []
    with store.transaction() as conn:
        if replace is not None:
            kind, keys = replace
            keys = sorted({str(k) for k in keys})
            stale: list[str] = []
            if kind == "visits":
                t = schema.sightings
                keep = {s.id for s in sightings}
                ships = None if mmsis is None else {int(m) for m in mmsis}
                for k in range(0, len(keys), 500):
                    q = select(t.c.id, t.c.detail).where(t.c.event == "ais_visit",
                                                         t.c.source_kind == str(SourceKind.AIS),
                                                         t.c.site.in_(keys[k : k + 500]))
                    # only the visits of ships in this workspace's AIS: another workspace watching the same site
                    # keeps its own ships' visits
                    stale += [i for i, detail in conn.execute(q)
                              if i not in keep and (ships is None or _visit_mmsi(detail) in ships)]
                gone_evidence = _ais_evidence_of(conn, stale)
                store.remove_sightings(stale, conn=conn)
            else:
                gone_evidence += _drop_gaps_not_found(conn, keys, gaps)
        if gaps_read is not None:
            g = schema.ais_gaps
            t0, t1, reach, ships = gaps_read
            starts = (g.c.start_time >= t0) & (g.c.start_time < t1) & (g.c.end_time < t1 + reach)  # days read
            ends = (g.c.end_time >= t0) & (g.c.end_time < t1) & (g.c.start_time >= t0 - reach)
            gone_evidence += _drop_gaps_not_found(conn, ships, gaps, starts | ends)
        if remove:
            gone_evidence += _ais_evidence_of(conn, list(remove))
            store.remove_sightings(list(remove), conn=conn)
        # a visit written again under its id (the same start) may now rest on other evidence (a longer stay)
        gone_evidence += _ais_evidence_of(conn, [s.id for s in sightings])
        store.add_evidence(list(evidence), conn=conn)
        store.add_sightings(list(sightings), conn=conn)
        if gaps:  # a gap written again under its id (the same start) may end elsewhere: its old evidence goes
            new_ev = {e for r in gaps for e in r["evidence_ids"]}
            gone_evidence += [e for e in _gap_evidence_of(conn, [r["id"] for r in gaps]) if e not in new_ev]
        _drop_unlinked(conn, gone_evidence)  # the AIS evidence of visits and gaps replaced, that nothing else cites
        if gaps:
            _replace(conn, schema.ais_gaps, list(gaps), "id")
        if vessels:
            _replace(conn, schema.ais_vessels, list(vessels), "mmsi")
    return {"sightings": len(sightings), "evidence": len(evidence), "gaps": len(gaps), "vessels": len(vessels)}


def _ais_evidence_of(conn: Any, sighting_ids: list[str]) -> list[str]:
    """The AIS evidence (``ais-...``) the given sightings cite."""
    from sqlalchemy import select

    from routewatch.store import schema

    link = schema.evidence_links
    out: list[str] = []
    for k in range(0, len(sighting_ids), 500):
        q = select(link.c.evidence_id).where(link.c.owner_kind == "sighting",
                                             link.c.owner_id.in_(sighting_ids[k : k + 500]))
        out += [e for e in conn.execute(q).scalars() if str(e).startswith("ais-")]
    return out


def _drop_gaps_not_found(conn: Any, mmsis: Iterable[Any], found: Any, where: Any = None) -> list[str]:
    """Remove the stored gaps of ``mmsis`` (those matching ``where`` too, when given) that are not among ``found``
    (the gap rows a run wrote); returns their evidence ids, which go with them unless something else cites them."""
    from sqlalchemy import select

    from routewatch.store import schema

    g = schema.ais_gaps
    ships = sorted({str(m) for m in mmsis})
    keep = {r["id"] for r in found}
    stale: list[str] = []
    for k in range(0, len(ships), 500):
        q = select(g.c.id).where(g.c.mmsi.in_(ships[k : k + 500]))
        q = q.where(where) if where is not None else q
        stale += [i for i in conn.execute(q).scalars() if i not in keep]
    gone = _gap_evidence_of(conn, stale)
    for k in range(0, len(stale), 500):
        conn.execute(delete(g).where(g.c.id.in_(stale[k : k + 500])))
    return gone


def _gap_evidence_of(conn: Any, gap_ids: list[str]) -> list[str]:
    """The evidence the stored gaps of these ids cite (their ``evidence_ids``)."""
    from sqlalchemy import select

    from routewatch.store import schema

    g = schema.ais_gaps
    out: list[str] = []
    for k in range(0, len(gap_ids), 500):
        for ids in conn.execute(select(g.c.evidence_ids).where(g.c.id.in_(gap_ids[k : k + 500]))).scalars():
            out += [str(e) for e in (ids or [])]
    return out


def _drop_unlinked(conn: Any, evidence_ids: list[str]) -> None:
    """Delete these evidence rows when no record links to them any more (a replaced visit's own evidence)."""
    from sqlalchemy import select

    from routewatch.store import schema

    link, ev = schema.evidence_links, schema.evidence
    ids = sorted(set(evidence_ids))
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        cited = set(conn.execute(select(link.c.evidence_id).where(link.c.evidence_id.in_(chunk))).scalars())
        orphan = [e for e in chunk if e not in cited]
        if orphan:
            conn.execute(delete(ev).where(ev.c.id.in_(orphan)))
