"""Fusion of image detections with AIS: identified or dark, and which watchlist vessel a dark ship probably is.

``fuse_detections`` takes detections (one frame, any number of image times) and the AIS positions around them,
matches each image's detections to AIS interpolated to its time (:mod:`.match`), and scores the dark ones against
the watchlist (:mod:`.identify`). A detection with no AIS position of any ship within ``coverage_radius_m`` in the
time window is ``no-ais`` instead of dark: without coverage nothing says its transponder was off (it is still
scored against the watchlist). ``fused_sightings`` turns the result into new sightings with deterministic ids
(the detections' own records are never changed) and the evidence each label rests on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from routewatch.fuse.identify import (
    MAX_ODDS,
    UNKNOWN,
    Identification,
    IdentifyConfig,
    LastSeen,
    identify_dark,
    named,
    share_among_hulls,
    site_distances_m,
)
from routewatch.fuse.io import FUSION_EVIDENCE_PREFIX, fused_id
from routewatch.fuse.match import (
    FuseConfig,
    ais_coverage,
    around_image,
    could_be_here,
    interpolate_ais,
    match_detections,
    same_ship,
    two_transmitters,
)
from routewatch.model import (
    Evidence,
    EvidenceKind,
    Route,
    Sighting,
    Site,
    SiteKind,
    SourceKind,
    Vessel,
    stable_id,
)
from routewatch.sources.ais.registry import links_at

__all__ = ["DARK", "IDENTIFIED", "NO_AIS", "UNKNOWN", "UNRESOLVED", "FuseConfig", "IdentifyConfig",
           "fuse_detections", "fused_sightings"]

IDENTIFIED, DARK = "identified", "dark"
NO_AIS = "no-ais"  # no AIS position of any ship near the detection around the image time: dark or not is unknown
# an AIS ship heard around the image time, which AIS cannot place at that time, could be this one: not dark
UNRESOLVED = "unresolved"
SAME_IMAGE_S = 60.0  # detections this close in time are one image (per-line acquisition times differ by seconds)

RESULT_COLUMNS = ["id", "time", "lon", "lat", "length_m", "width_m", "heading_deg", "score", "site", "status",
                  "mmsi", "match_distance_m", "match_confidence", "ais_method", "ais_evidence", "vessel",
                  "identification_confidence", "probabilities", "reasons", "ais_ship"]
# ``ais_ship``: the MMSI of the AIS ship a detection is (its match likelier than a ship without AIS), on the
# watchlist or not; null for dark, no-ais and weak matches. The analysis keys a ship not on the watchlist by it.


@dataclass(frozen=True)
class FusionInputs:
    vessels: Mapping[str, Vessel]
    routes: Mapping[str, Route]
    mmsi_vessel: Mapping[int, str]  # MMSI -> watchlist key (watchlist and registry links)
    ais_length: Mapping[int, float]  # MMSI -> length from static reports
    sites: Mapping[str, Site] = field(default_factory=dict)  # the watchlist's: where the vessels' routes call


def _last_seen(positions: pl.DataFrame, when, mmsi_vessel: Mapping[int, str],
               after: bool = False) -> dict[str, LastSeen]:
    """Each watchlist vessel's AIS position nearest before (or at) ``when``; with ``after``, the first after it."""
    wanted = list(mmsi_vessel)
    if not wanted or positions.height == 0:
        return {}
    near = (positions.filter(pl.col("mmsi").is_in(wanted)
                             & ((pl.col("timestamp") > when) if after else (pl.col("timestamp") <= when)))
            .sort("timestamp").group_by("mmsi").agg(pl.all().first() if after else pl.all().last()))
    out: dict[str, LastSeen] = {}
    # a vessel with several MMSIs (a reflag): the nearest in time of them
    for r in near.sort("timestamp", "mmsi", descending=after).iter_rows(named=True):
        out[mmsi_vessel[int(r["mmsi"])]] = LastSeen(r["timestamp"], r["lon"], r["lat"])
    return out


def _images(det: pl.DataFrame, within_s: float = SAME_IMAGE_S) -> list[tuple[object, pl.DataFrame]]:
    """The detections split into images of at most ``within_s`` (a scene's detections can carry their own line
    times, seconds apart; fused as separate images, one AIS ship had been matched to two hulls and one watchlist
    vessel named twice; a Sentinel-1 slice takes about 25 s). Times are cut where they are more than ``within_s``
    apart, and a run longer than that is cut at its widest gaps until every part is short enough (cut at a fixed
    time, detections a second apart had fallen into two images). Each image is fused at the middle of its times,
    at most 30 s from any of them (chained over minutes, a moving ship's AIS had been placed 150 s off its hull);
    the rows keep their order within it."""
    order = det.with_row_index("_k").sort("time", "_k")
    times = order["time"].to_list()
    if not times:
        return []

    def parts(lo: int, hi: int) -> list[tuple[int, int]]:  # [lo, hi) as runs of at most within_s
        if (times[hi - 1] - times[lo]).total_seconds() <= within_s:
            return [(lo, hi)]
        mid = (lo + hi) / 2  # of equal gaps, the middle one (even spacing gives even parts)
        cut = max(range(lo + 1, hi), key=lambda i: (times[i] - times[i - 1], -abs(i - mid), -i))
        return parts(lo, cut) + parts(cut, hi)

    groups = []
    for lo, hi in parts(0, len(times)):
        part = order.slice(lo, hi - lo).sort("_k").drop("_k")
        groups.append((times[lo] + (times[hi - 1] - times[lo]) / 2, part))
    return groups


def fuse_detections(
    detections: pl.DataFrame,
    positions: pl.DataFrame,
    inputs: FusionInputs,
    config: FuseConfig | None = None,
    identify: IdentifyConfig | None = None,
) -> pl.DataFrame:
    """Label every detection identified, dark, unresolved or no-ais (see RESULT_COLUMNS); ``positions`` should cover each
    image time +- ``window_min`` (and, for reachability, some days before). Dark and no-ais detections are both
    scored against the watchlist."""
    cfg = config or FuseConfig()
    icfg = identify or IdentifyConfig()
    det = detections
    for col in ("length_m", "width_m", "heading_deg", "score", "site"):
        if col not in det.columns:
            det = det.with_columns(pl.lit(None, pl.String if col == "site" else pl.Float64).alias(col))
    out: list[pl.DataFrame] = []
    for when, group in _images(det):
        window = positions.filter(pl.col("timestamp").is_between(when - timedelta(minutes=cfg.window_min),
                                                                  when + timedelta(minutes=cfg.window_min)))
        around = around_image(window, when)  # each ship's messages either side of the image, read three ways
        ais = interpolate_ais(window, when, cfg, around=around)
        twins = same_ship(group, cfg.same_ship_m)  # one ship detected twice: one match, one name
        matched = match_detections(group, ais, dict(inputs.ais_length), cfg, twins)
        covered = pl.Series(ais_coverage(group, window, cfg.coverage_radius_m))
        maybe = could_be_here(group, around, {int(m) for m in ais["mmsi"]}, when, cfg)
        unplaced = pl.Series([bool(c) for c in maybe], dtype=pl.Boolean)
        matched = matched.with_columns(
            pl.when(pl.col("status").eq(DARK) & pl.lit(unplaced)).then(pl.lit(UNRESOLVED))
            .when(pl.col("status").eq(DARK) & ~pl.lit(covered)).then(pl.lit(NO_AIS))
            .otherwise(pl.col("status")).alias("status"))
        # the identities the ships broadcast at the image's time (a ship that took a watched ship's IMO later was
        # not that ship then), where the links know their history
        links = links_at(inputs.mmsi_vessel, when)
        # a vessel placed by AIS at the image time is there, not here; one whose MMSI carries two transmitters
        # (messages around the image no ship could sail between) is placed nowhere for sure, and neither its
        # last nor its next position rules it out
        conflicting = two_transmitters(around, cfg)
        trusted = {m: v for m, v in links.items() if m not in conflicting}
        last_seen = _last_seen(positions, when, trusted)
        next_seen = _last_seen(positions, when, trusted, after=True)
        located = {links[int(m)] for m in ais["mmsi"] if int(m) in trusted}
        # a vessel is placed by the image itself where its AIS is matched to a hull, and the match is no weaker
        # than a ship without AIS and its MMSI not heard from two places (either hull could be another ship's)
        matched_keys = {links.get(int(m["mmsi"])) for m in matched.iter_rows(named=True)
                        if m["status"] == IDENTIFIED and m["mmsi"] is not None and m["match_cost"] < cfg.dark_cost
                        and int(m["mmsi"]) not in conflicting}
        vessel, conf, probs, reasons, ships = [], [], [], [], []
        idents: dict[int, Identification] = {}  # the dark and no-ais detections' own scores, by row
        unmatched: list[int] = []  # the dark and no-ais detections, scored one by one against the watchlist
        for d, m in zip(group.iter_rows(named=True), matched.iter_rows(named=True), strict=True):
            if m["status"] == IDENTIFIED:
                key = links.get(int(m["mmsi"]))
                why = f"AIS MMSI {m['mmsi']} {m['match_distance_m']:.0f} m away ({m['ais_method']})"
                ais_len = inputs.ais_length.get(int(m["mmsi"]))
                if d["length_m"] is not None and ais_len is not None:  # what the size says, agreeing or not
                    spread = max(cfg.length_sigma_min_m, cfg.length_sigma_frac * d["length_m"])
                    why += (f"; length {d['length_m']:.0f} m measured, {ais_len:.0f} m by AIS"
                            + (" (they disagree)" if abs(d["length_m"] - ais_len) > 2 * spread else ""))
                if int(m["mmsi"]) in conflicting and key:  # which of its transmitters is the watched ship is
                    # unknown: it had been named at two places at once, 0.9997 each
                    why += (f"; not named {key}: MMSI {m['mmsi']} was heard from two places no ship could sail "
                            "between around the image time")
                    key = None
                weak = m["match_cost"] >= cfg.dark_cost
                if weak:
                    # the assigned AIS ship, but less likely than a ship without AIS (a 400 m hull at a 141 m
                    # ship's position): said, not named. Only this pair against "dark" counts here: ships moored
                    # beside it lower the match confidence without making this ship any less the match
                    why += (f"; {f'not named {key}: ' if key else ''}the match (cost {m['match_cost']:.1f}) is "
                            f"weaker than a ship without AIS ({cfg.dark_cost:g})")
                    key = None
                ships.append(None if weak else int(m["mmsi"]))
                vessel.append(key)
                conf.append(m["match_confidence"] if key else None)
                probs.append(json.dumps({links.get(int(m["mmsi"])) or f"MMSI {m['mmsi']}":
                                         round(m["match_confidence"], 4)}))
                reasons.append(why)
                continue
            idents[len(vessel)] = identify_dark(
                length_m=d["length_m"], width_m=d["width_m"], lon=d["lon"], lat=d["lat"], time=when,
                site=d["site"], vessels=inputs.vessels, routes=inputs.routes, sites=inputs.sites, last_seen=last_seen,
                next_seen=next_seen, seen_elsewhere=located - matched_keys - {None},
                matched_elsewhere=matched_keys - {None}, config=icfg)
            for column in (vessel, ships, conf, probs, reasons):
                column.append(None)  # filled below, once every hull of the image is scored
            unmatched.append(len(vessel) - 1)
        shared = _shared_at_sites(idents, _sites_of(group, inputs.sites, icfg.near_site_m), twins, icfg)
        for k, ident in idents.items():
            m = matched.row(k, named=True)
            probabilities, at_site = shared.get(k, (ident.probabilities, None))
            why = dict(ident.reasons)
            if at_site:
                why["hulls at the site"] = at_site
            best = named(probabilities, icfg.min_probability)
            best_p = probabilities[best] if best else None
            if m["ais_note"]:
                why["nearest AIS ship"] = m["ais_note"]
            if maybe[k]:  # AIS ships that could be here: a watchlist name only when it is one of them
                others = [(mm, w) for mm, w in maybe[k] if links.get(mm) != best]
                why["AIS ships that could be here"] = "; ".join(w for _, w in maybe[k])
                if best is not None and others:
                    why[best] = (why.get(best, "") + f"; not named: {others[0][1]}").lstrip("; ")
                    best, best_p = None, None
            vessel[k], conf[k] = best, best_p
            probs[k] = json.dumps({v: round(p, 4) for v, p in sorted(probabilities.items(), key=lambda kv: -kv[1])})
            reasons[k] = json.dumps(why)
        _one_place_each(unmatched, list(group["id"]), vessel, conf, reasons, twins, probs)
        out.append(group.join(matched, on="id", how="left").with_columns(
            pl.Series("vessel", vessel, pl.String), pl.Series("identification_confidence", conf, pl.Float64),
            pl.Series("probabilities", probs, pl.String), pl.Series("reasons", reasons, pl.String),
            pl.Series("ais_ship", ships, pl.Int64)))
    if not out:
        return pl.DataFrame(schema={c: pl.String for c in RESULT_COLUMNS})
    return pl.concat(out, how="diagonal_relaxed").select(RESULT_COLUMNS + [c for c in ("evidence_ids", "look_id",
                                                                                     "simulated")
                                                                           if c in det.columns])


MARITIME = (SiteKind.PORT, SiteKind.BERTH, SiteKind.ANCHORAGE, SiteKind.SHIPYARD)


def _sites_of(group: pl.DataFrame, sites: Mapping[str, Site], near_m: float) -> list[str | None]:
    """Each detection's site, for sharing the watchlist among the hulls there: its own, else the nearest watched
    port, berth, anchorage or shipyard within ``near_m`` (where the prior takes a ship to be at that site: an
    anchorage outside the polygon; an airfield or rail yard nearer it is no place of ships)."""
    out: list[str | None] = list(group["site"])
    todo = [i for i, s in enumerate(out) if s is None and group["lon"][i] is not None and group["lat"][i] is not None]
    sites = {k: s for k, s in sites.items() if s.kind in MARITIME}
    if not todo or not sites:
        return out
    lon = np.array([group["lon"][i] for i in todo], float)
    lat = np.array([group["lat"][i] for i in todo], float)
    dist = np.column_stack([site_distances_m(site.geometry, lon, lat) for site in sites.values()])
    keys = list(sites)
    for j, i in enumerate(todo):
        k = int(np.argmin(dist[j]))
        if dist[j, k] <= near_m:
            out[i] = keys[k]
    return out


def _odds(probabilities: Mapping[str, float], vessel: str) -> float:
    p = probabilities.get(vessel, 0.0)
    return p / max(probabilities.get(UNKNOWN, 0.0), p / MAX_ODDS, 1e-300)


def _shared_at_sites(idents: Mapping[int, Identification], sites: list[str | None], twins: list[list[int]],
                     cfg: IdentifyConfig) -> dict[int, tuple[dict[str, float], str | None]]:
    """Probabilities of the dark hulls of one image at one site, each watchlist vessel being at most one of them
    (:func:`~routewatch.fuse.identify.share_among_hulls`), and a reason; hulls alone at their site (or at none)
    keep their own. The same ship detected twice (``twins``) is one hull. ``sites``: each detection's site
    (:func:`_sites_of`)."""
    by_site: dict[str, list[list[int]]] = {}
    seen: set[int] = set()
    for i in sorted(idents):
        if sites[i] is None or i in seen:
            continue
        ship = [i] + [t for t in twins[i] if t in idents]
        seen.update(ship)
        by_site.setdefault(sites[i], []).append(ship)
    out: dict[int, tuple[dict[str, float], str | None]] = {}
    for site, hulls in by_site.items():
        if len(hulls) < 2:
            continue
        keys = sorted({v for ship in hulls for i in ship for v in idents[i].probabilities} - {UNKNOWN})
        # odds against an unknown ship; a hull certain of a vessel (no unknown ship left) has them at the cap
        odds = np.array([[float(np.mean([_odds(idents[i].probabilities, v) for i in ship])) for v in keys]
                         for ship in hulls])
        p, p_unknown = share_among_hulls(odds)
        present = p.sum(axis=0)
        for h, ship in enumerate(hulls):
            probabilities = {v: float(p[h, j]) for j, v in enumerate(keys)}
            probabilities[UNKNOWN] = float(p_unknown[h])
            likeliest = [j for j in np.argsort(-present) if present[j] >= 0.05][:3]
            why = (f"{len(hulls)} hulls without an AIS match at {site} in this image, each watchlist vessel at most "
                   "one of them: "
                   + ("; ".join(f"{keys[j]} {present[j]:.2f} likely one of them, {p[h, j]:.2f} this one"
                                for j in likeliest) or "no watchlist vessel likely among them"))
            for i in ship:
                out[i] = (probabilities, why)
    return out


def _one_place_each(rows: list[int], ids: list[str], vessel: list, conf: list, reasons: list,
                    twins: list[list[int]], probs: list | None = None) -> None:
    """One ship is in one place: a watchlist vessel named for several detections of one image keeps its name on
    the likeliest of them and on that one's twins (the same ship detected twice, :func:`.match.same_ship`); the
    others are left unnamed, their reasons say where it was named, and their probability of being it is 0 (it
    had stayed 0.91 in the map each carries, naming the vessel there still). (Each detection is scored on its
    own, so three 90 m hulls at a 90 m vessel's port had all been named it, at 0.91 each.)"""
    by_vessel: dict[str, list[int]] = {}
    for i in rows:
        if vessel[i]:
            by_vessel.setdefault(vessel[i], []).append(i)
    for key, idx in by_vessel.items():
        if len(idx) < 2:
            continue
        keep = max(idx, key=lambda i: (conf[i] or 0.0, ids[i]))
        for i in idx:
            if i == keep or i in twins[keep]:
                continue
            why = json.loads(reasons[i]) if reasons[i] else {}
            why[key] = (str(why.get(key, "")) + f"; not named: detection {ids[keep]} of the same image is likelier "
                        f"{key} ({conf[keep]:.2f} against {conf[i]:.2f}), and one ship is in one place").lstrip("; ")
            reasons[i] = json.dumps(why)
            vessel[i], conf[i] = None, None
            if probs is not None and probs[i]:  # 0 for it; its share goes to an unknown ship (given to the other
                # vessels, it could make one of them likelier than the name threshold without naming it)
                rest = json.loads(probs[i])
                rest[UNKNOWN] = round(rest.get(UNKNOWN, 0.0) + rest.get(key, 0.0), 4)
                rest[key] = 0.0
                probs[i] = json.dumps(dict(sorted(rest.items(), key=lambda kv: -kv[1])))


def _reasons(text: str | None) -> dict[str, str] | str | None:
    """Why each alternative got its probability (a dark detection), or how it was identified (an AIS match)."""
    if not text:
        return None
    try:
        return dict(json.loads(text))
    except (ValueError, TypeError):
        return text


def fused_sightings(result: pl.DataFrame, source_kind: SourceKind = SourceKind.IMAGE) -> tuple[list[Sighting], list[Evidence]]:
    """New sightings (ids derived from the detection ids) carrying the fusion's label, and its evidence."""
    sightings, evidence = [], []
    for r in result.iter_rows(named=True):
        ev = Evidence(
            id=stable_id(FUSION_EVIDENCE_PREFIX, r["id"]), kind=EvidenceKind.DERIVED,
            description=(f"detection {r['id']} {r['status']}"
                         + (f": AIS MMSI {r['mmsi']} at {r['match_distance_m']:.0f} m" if r["mmsi"] is not None else "")),
            observed_at=r["time"],
            attributes={"detection": r["id"], "status": r["status"], "mmsi": r["mmsi"],
                        "match_distance_m": r["match_distance_m"],
                        "ais_message": r["ais_evidence"], "probabilities": json.loads(r["probabilities"] or "{}"),
                        "reasons": _reasons(r.get("reasons"))},
        )
        evidence.append(ev)
        base = tuple(r.get("evidence_ids") or ())
        sightings.append(Sighting(
            id=fused_id(r["id"]), time=r["time"], source_kind=source_kind, site=r["site"],
            vessel=r["vessel"], event="detection", lon=r["lon"], lat=r["lat"], length_m=r["length_m"],
            width_m=r["width_m"], heading_deg=r["heading_deg"], score=r["score"],
            confidence=float(r["score"]) if r["score"] is not None else 0.7,
            identification_confidence=r["identification_confidence"], evidence_ids=(*base, ev.id),
            look_id=r.get("look_id"),  # the look of the detection: a look detected again takes it along
            simulated=bool(r.get("simulated") or False),  # a label on a simulated detection is simulated too
            # an AIS ship not on the watchlist says so (the analysis keys its visits by the MMSI)
            detail=f"{r['status']}; " + (f"MMSI {r['ais_ship']}; " if r.get("ais_ship") is not None
                                         and r["vessel"] is None else "") + (r["probabilities"] or ""),
        ))
    return sightings, evidence
