"""Ingest AIS files (NMEA or provider CSV) into the workspace's day partitions and vessel registry.

Re-ingesting adds nothing: a file already in the manifest (by content hash) is skipped, and even a forced re-read
drops every position already present. Large NMEA files are read in chunks of lines so memory stays bounded; a
multipart message cut by a chunk boundary is carried into the next chunk, and the chunks' parts are published
together when the whole file has been read.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import re
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from routewatch.sources.ais.nmea import (
    TAG_BLOCK,
    TAG_GROUP,
    TAG_STATION,
    ReadReport,
    fitting_message,
    read_nmea_lines,
)
from routewatch.sources.ais.partitions import (
    discard,
    publish,
    read_manifest,
    record_in_manifest,
    write_positions,
)
from routewatch.sources.ais.providers import (
    ColumnMapping,
    FileShape,
    detect_layout,
    header_names,
    read_header,
    read_provider_csv,
)
from routewatch.sources.ais.registry import merge_statics, statics_frame

CHUNK_LINES = 1_000_000
_FRAGMENT = re.compile(r"!..VD[MO],(\d),(\d),(\d*),([^,]*),")  # count, index, sequence id, channel
_TAG, _STATION, _GROUP = re.compile(TAG_BLOCK), re.compile(TAG_STATION), re.compile(TAG_GROUP)  # as the reader
Progress = Callable[[str, int], None]  # (file name, lines done in this step)


@dataclass
class FileSummary:
    path: str
    kind: str  # nmea, or the CSV layout's name
    skipped: bool = False  # already in the manifest
    added: int = 0
    duplicates: int = 0
    statics_added: int = 0
    report: ReadReport = field(default_factory=ReadReport)
    unread: bool = False  # nothing usable read (every row bad): not marked as ingested, so a fix can read it


DIGEST_PREFIX = "xxh3-128:"


def file_digest(path: Path) -> str:
    """The file's identity in the manifest: XXH3-128 of its bytes, written ``xxh3-128:<hex>``.

    A non-cryptographic hash is enough here (the manifest only answers "was this content ingested?", and a
    re-read drops repeated positions anyway) and runs at about 12 GB/s against SHA-256's 1.6 GB/s: on a 230 MB
    provider day file that is 0.02 s instead of 0.15 s of CPU taken from the parser. Manifests written with
    SHA-256 digests (plain hex) stay valid: a file whose SHA-256 is listed is skipped and listed under its new
    digest instead (see :func:`_listed_under_sha256`).
    """
    return DIGEST_PREFIX + _hash_file(path, xxhash.xxh3_128())


def digest_and_shape(path: Path, separator: str = ",") -> tuple[str, FileShape]:
    """The file's digest (see :func:`file_digest`) and its :class:`FileShape` (newlines, commas, quotes), both
    over the same blocks: a CSV's reader needs the shape, and reading the file twice would cost more."""
    h = xxhash.xxh3_128()
    shape = FileShape.of(_blocks(path, h), separator)
    return DIGEST_PREFIX + h.hexdigest(), shape


def _blocks(path: Path, h: Any) -> Iterator[bytes]:
    """The file's bytes in 4 MiB blocks, each fed to the hashlib-style object ``h`` on the way."""
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
            yield block


def _hash_file(path: Path, h: Any) -> str:
    """Feed the file to a hashlib-style object; its hex digest."""
    for _ in _blocks(path, h):
        pass
    return str(h.hexdigest())


_SHA256_KEY = re.compile(r"[0-9a-f]{64}")


def _listed_under_sha256(path: Path, manifest: dict[str, dict]) -> str | None:
    """The SHA-256 key under which a manifest written before XXH3 lists this file's content, if any.

    Only computed when the manifest still holds such keys (0.15 s of CPU for a 230 MB file), so that an archive
    ingested before the change is recognised, not read again.
    """
    if not any(_SHA256_KEY.fullmatch(k) for k in manifest):
        return None
    key = _hash_file(path, hashlib.sha256())
    return key if key in manifest else None


def _open_text(path: Path):
    """Lines of a plain or gzipped NMEA file (ASCII; undecodable bytes become U+FFFD). Lines end at a newline
    only, so that a stray carriage return in binary junk does not shift the reported line numbers; a file whose
    lines end with a carriage return alone (no newline in its first 64 KiB) is read with universal newlines, one
    that opens with a UTF-8 byte-order mark as UTF-8 without it."""
    gz = path.suffix.lower() == ".gz"
    with gzip.open(path, "rb") if gz else path.open("rb") as fh:
        head = fh.read(1 << 16)
    newline = None if b"\r" in head and b"\n" not in head else "\n"
    # a byte-order mark (an editor's UTF-8 save) is not part of the first line, whose time it would hide
    encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "ascii"
    if gz:
        return gzip.open(path, "rt", encoding=encoding, errors="replace", newline=newline)
    return path.open("r", encoding=encoding, errors="replace", newline=newline)


_NMEA_SENTENCE = re.compile(r"![A-Z]{2}VD[MO],")


def file_mapping(path: Path, mapping: ColumnMapping | None) -> tuple[bool, ColumnMapping | None]:
    """Whether a file is a provider CSV (else NMEA), and the column mapping to read it with.

    A mapping given for a command's files is used for a CSV whose header holds the mapping's four required
    columns; a file that does not, but is a known layout (a MarineCadastre export ingested beside the user's own
    CSVs), is read as that layout, and an NMEA file (a sentence on its first line) as NMEA. Any other file is
    read with the mapping, which then names the column its header lacks."""
    header = read_header(path)
    layout = detect_layout(header)
    if mapping is not None:
        names = header_names(header, mapping.delimiter)
        if all(mapping.source_columns()[k] in names for k in ("mmsi", "timestamp", "lon", "lat")):
            return True, mapping
        if layout is not None:
            return True, layout
        if _starts_with_nmea(path):
            return False, None
        return True, mapping
    if layout is None and _starts_with_nmea(path):  # a receiver's log named .csv is still NMEA
        return False, None
    return path.name.lower().removesuffix(".gz").endswith(".csv") or layout is not None, layout


def _starts_with_nmea(path: Path, lines: int = 5) -> bool:
    """Whether an AIS sentence is on one of the file's first non-blank lines (a banner or a blank line may come
    before the first one)."""
    with _open_text(path) as fh:
        head = [ln for ln in (fh.readline() for _ in range(50)) if ln.strip()][:lines]
    return any(_NMEA_SENTENCE.search(ln) for ln in head)


def nmea_chunks(path: Path, chunk_lines: int = CHUNK_LINES) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) chunks; the fragments of multipart messages still unfinished at a chunk's end
    move on to the next chunk (the last chunk keeps all it has: there is none to move them to)."""
    carry: list[str] = []
    first = 1
    with _open_text(path) as fh:
        lines = (ln.rstrip("\r\n") for ln in fh)
        ahead = next(lines, None)
        while ahead is not None:
            block = [*carry, ahead, *(ln for _, ln in zip(range(chunk_lines - 1), lines, strict=False))]
            ahead = next(lines, None)
            cut = len(block) if ahead is None else _unfinished_from(block)
            if cut:
                yield first, block[:cut]
                first += cut
            carry = block[cut:]
        if carry:
            yield first, carry


def _unfinished_from(block: list[str], look_back: int = 1600) -> int:
    """Where the block can be cut so that no multipart message has fragments on both sides: before the first
    fragment of each message still unfinished at the block's end, and of each message that another such cut
    would split (two receivers' messages interleaved: A1 B1 A2 B2). A message is known by its fragment count,
    sequence id, channel, tag-block station and group (a later fragment naming no station or group closes the one
    open message it fits), and finished by its last fragment or by a new message on its key (the reader gives it
    up there). Only messages begun in the last ``look_back`` lines are looked at: the reader joins fragments up to
    200 lines apart, and a message has at most 9 (8 gaps), so at most that many lines move on. Returns the
    block's length when nothing needs to move on, and 0 when all of it does (a short chunk)."""
    spans: list[list[int]] = []  # [first fragment's index, last fragment's index or the block's length]
    open_: dict[tuple, list[int]] = {}  # the reader's key: (station, group, channel, sequence id, count)
    for i in range(max(len(block) - look_back, 0), len(block)):
        m = _FRAGMENT.search(block[i])
        if not m or m.group(1) == "1":
            continue
        tag = _TAG.search(block[i])
        st, gr = (_STATION.search(tag.group(1)), _GROUP.search(tag.group(1))) if tag else (None, None)
        key = (st.group(1) if st else None, gr.group(1) if gr else None, m.group(4), m.group(3), m.group(1))
        if m.group(2) == "1":
            if key in open_:  # a new message on the same key: the reader gives the open one up here
                open_[key][1] = i
            open_[key] = [i, len(block)]
            spans.append(open_[key])
        elif m.group(2) == m.group(1):
            if key not in open_ and (key[0] is None or key[1] is None):  # names no station or no group
                key = fitting_message(key, open_) or key
            if key in open_:
                open_.pop(key)[1] = i
    cut = len(block)
    moved = True
    while moved:
        moved = False
        for start, end in spans:
            if start < cut <= end:
                cut, moved = start, True
    return cut  # 0: the whole block moves on, to be read with the next lines


def ingest_file(
    path: Path,
    ais_dir: Path,
    *,
    default_time: datetime | None = None,
    mapping: ColumnMapping | None = None,
    force: bool = False,
    progress: Progress | None = None,
    chunk_lines: int = CHUNK_LINES,
) -> FileSummary:
    """Read one file into the partitions; bad lines are counted in the summary's report, never raised. A file
    that cannot be read at all raises OSError or ValueError naming it (a gzip cut short or corrupt too: its
    EOFError would otherwise reach the command line as a bare "Aborted.")."""
    try:
        return _ingest_file(path, ais_dir, default_time=default_time, mapping=mapping, force=force,
                            progress=progress, chunk_lines=chunk_lines)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip ({exc or type(exc).__name__})") from None
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:  # reading or writing this file failed:
        # named, so that the command goes on with the other files and records this one as a failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: could not be ingested ({first})") from None


def _ingest_file(
    path: Path,
    ais_dir: Path,
    *,
    default_time: datetime | None,
    mapping: ColumnMapping | None,
    force: bool,
    progress: Progress | None,
    chunk_lines: int,
) -> FileSummary:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: " + ("a folder, not a file (give its files: folder/*)" if path.is_dir()
                                              else "no such file"))
    if path.stat().st_size == 0:  # an empty file (a feed that sent nothing that hour): nothing to read, no error,
        return FileSummary(str(path), "empty")  # as for an NMEA file of blank lines; its next content is read
    csv, mapping = file_mapping(path, mapping)
    separator = mapping.delimiter if mapping else ","
    summary = FileSummary(str(path), (mapping.name if mapping else "csv") if csv else "nmea")
    manifest = read_manifest(ais_dir)
    stat = path.stat()
    where = str(path.resolve())  # the manifest names files absolutely: a command run from another folder finds them
    seen_before = any(e.get("path") in (where, str(path)) and e.get("size") == stat.st_size
                      and e.get("mtime_ns") == stat.st_mtime_ns for e in manifest.values())
    if not force:
        old_key = _listed_under_sha256(path, manifest)
        if old_key is not None:  # ingested before the manifest used XXH3: list it under its new digest
            record_in_manifest(ais_dir, file_digest(path), manifest[old_key], replaces=old_key)
            summary.skipped = True
            return summary
    pending, known_shape = None, None
    if csv and not force and not seen_before:
        # A new CSV: hash it in a thread while polars parses it (xxhash and polars both release the GIL).
        pool = ThreadPoolExecutor(1)
        pending = pool.submit(digest_and_shape, path, separator)
        pool.shutdown(wait=False)
        digest = None
    else:
        # only a CSV's reader needs the shape: an NMEA file is just hashed
        digest, known_shape = digest_and_shape(path, separator) if csv else (file_digest(path), None)
        if not force and digest in manifest:
            summary.skipped = True
            return summary
    if csv:
        try:  # the hashing pass gives the file's shape too (a compressed file's is taken by the reader)
            res = read_provider_csv(path, mapping, shape=(lambda: pending.result()[1]) if pending
                                    else (lambda: known_shape) if known_shape else None)
        finally:
            if pending is not None:
                digest = pending.result()[0]
        if not force and digest in manifest:  # same content under another name or time: still nothing to add
            summary.skipped = True
            return summary
        stats = write_positions(ais_dir, res.positions, digest)
        summary.added, summary.duplicates, summary.report = stats.added, stats.duplicates, res.report
        summary.statics_added = merge_statics(ais_dir, statics_frame(res.statics, path.name))
        if progress:
            progress(path.name, res.report.lines)
        if res.positions.height == 0 and res.report.bad_total:
            # every row bad (a time format that fits none of them, lon and lat swapped out of range): most likely
            # the mapping, not the file; not marked as read, so that running again with a fixed mapping reads it
            # (its registry records are merged, once, as every reading's are)
            summary.unread = True
            return summary
    else:
        # Chunks keep memory bounded; their parts stay staged until the whole file is read, so an interrupted
        # ingest leaves nothing behind and a reader never sees part of a file.
        # The static reports are merged into the registry once, after the positions are published.
        total = summary.report
        staged: list[tuple[Path, Path]] = []
        statics: list[pl.DataFrame] = []
        try:
            for first, lines in nmea_chunks(path, chunk_lines):
                res = read_nmea_lines(lines, source=path.name, default_time=default_time, first_line=first)
                stats = write_positions(ais_dir, res.positions, f"{digest}:{first}", staged=staged)
                summary.added += stats.added
                summary.duplicates += stats.duplicates
                statics.append(statics_frame(res.statics, path.name))
                _merge_reports(total, res.report)
                if progress:
                    progress(path.name, len(lines))
            sentences = total.bad_total - total.bad.get("no AIS sentence", 0)
            if total.lines and not total.messages and sentences:  # AIS sentences, none decoded: say why
                raise ValueError(f"{path}: no AIS message decoded in {total.lines:,} lines ("
                                 + ", ".join(f"{reason}: {n:,}" for reason, n in total.bad.items()) + ")"
                                 + (f"; line {total.examples[0][0]}: {total.examples[0][2]}" if total.examples else ""))
            if total.lines and not total.messages:
                first = read_header(path)
                hint = ("; if it is a provider CSV, give a column mapping (--mapping) with its delimiter"
                        if any(c in first for c in ",;\t|") else "")
                raise ValueError(f"{path}: no AIS sentence in {total.lines:,} lines; not an NMEA file"
                                 + (f" (line {total.examples[0][0]}: {total.examples[0][2]})" if total.examples else "")
                                 + hint)
        except (EOFError, zlib.error) as exc:  # a gzip cut short or corrupt (BadGzipFile is an OSError: named too)
            discard(staged)
            raise ValueError(f"{path}: truncated or corrupt gzip ({exc})") from None
        except BaseException:
            discard(staged)
            raise
        publish(staged)
        summary.statics_added = merge_statics(ais_dir, pl.concat(statics)) if statics else 0
        if total.untimed and default_time is None:
            # positions without a time were left out: the file is not marked as read, so that running again
            # with --default-time adds them (positions already stored are not added twice)
            return summary
    entry = {
        "path": where, "kind": summary.kind, "ingested_at": datetime.now(UTC).isoformat(),
        "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "added": summary.added, "duplicates": summary.duplicates, "bad": summary.report.bad,
    }
    earlier = manifest.get(digest)
    if earlier is not None:  # a forced re-read: the positions this file gave are those of the first reading plus
        # any this one added; what it now finds stored already is not a repeat inside the file
        entry.update(added=int(earlier.get("added", 0)) + summary.added,
                     duplicates=int(earlier.get("duplicates", 0)),
                     first_ingested_at=earlier.get("first_ingested_at", earlier.get("ingested_at")))
    record_in_manifest(ais_dir, digest, entry)
    return summary


def _merge_reports(total: ReadReport, part: ReadReport) -> None:
    for name in ("lines", "messages", "positions", "statics", "fast_path", "untimed", "dead_reckoning"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for reason, n in part.bad.items():
        total.bad[reason] = total.bad.get(reason, 0) + n
    for ex in part.examples:
        if sum(1 for e in total.examples if e[1] == ex[1]) < 5:
            total.examples.append(ex)


def ingest_files(paths: list[Path], ais_dir: Path, **kwargs) -> list[FileSummary]:
    """Ingest several files in order; an unreadable file raises with its name (bad lines inside do not)."""
    return [ingest_file(Path(p), ais_dir, **kwargs) for p in paths]
