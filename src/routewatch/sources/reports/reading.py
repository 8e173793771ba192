"""Read observation files (CSV or JSON) into raw rows that remember their line, so every error can name it.

Both formats give the same thing: ``(line, {column: text})`` with JSON scalars turned into the text a CSV cell
would hold (``true``/``false``, numbers as written by ``repr``, null as empty), so one validator serves both.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path


class ObservationError(ValueError):
    """A problem in an observation file, located: ``file:line: field: message``. Nothing was stored."""

    def __init__(self, path: Path | str, line: int | None, fieldname: str, message: str) -> None:
        where = f"{path}" + (f":{line}" if line else "")
        super().__init__(f"{where}: {fieldname}: {message}")
        self.path, self.line, self.field = str(path), line, fieldname


RawRow = tuple[int, dict[str, str]]


def read_rows(path: Path, data: bytes, columns: Sequence[str], required: Sequence[str]) -> list[RawRow]:
    """Parse ``data`` (the file's bytes) as JSON when it starts with ``[`` or the name ends in .json, else CSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ObservationError(path, line, "encoding", f"not UTF-8 text ({exc.reason})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        rows = _json_rows(path, text)
        for line, row in rows:
            _check_columns(path, line, list(row), columns, required)
        return rows
    header_line, header, rows = _csv_rows(path, text)
    _check_columns(path, header_line, header, columns, required)
    return rows


def _check_columns(path: Path, line: int, names: Sequence[str], columns: Sequence[str],
                   required: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(columns))
    if unknown:
        raise ObservationError(path, line, unknown[0], f"unknown column; allowed: {', '.join(columns)}")
    missing = [c for c in required if c not in names]
    if missing:
        raise ObservationError(path, line, missing[0], "required column is missing")


def _csv_rows(path: Path, text: str) -> tuple[int, list[str], list[RawRow]]:
    # universal newlines (\n, \r\n, or \r alone as spreadsheets on a Mac write): str.splitlines would also break
    # at a form feed or U+2028 inside a field
    reader = csv.reader(io.StringIO(text, newline=None), strict=True)
    rows: list[RawRow] = []
    header: list[str] | None = None
    header_line = 1
    try:
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if header is None:
                header_line, header = start, [c.strip().lower() for c in cells]
                dupes = sorted({c for c in header if header.count(c) > 1})
                if dupes:
                    raise ObservationError(path, start, dupes[0], "column named twice in the header")
                if "" in header:
                    raise ObservationError(path, start, f"column {header.index('') + 1}", "empty column name")
                continue
            if len(cells) != len(header):
                raise ObservationError(path, start, "row",
                                       f"expected {len(header)} fields as in the header, found {len(cells)}")
            rows.append((start, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise ObservationError(path, reader.line_num, "csv", f"malformed CSV: {exc}") from None
    if header is None:
        raise ObservationError(path, None, "header", "empty file: expected a header line of column names")
    return header_line, header, rows


def _json_cell(path: Path, line: int, key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise ObservationError(path, line, key, f"expected text, a number, true/false or null, got {type(value).__name__}")


def _json_rows(path: Path, text: str) -> list[RawRow]:
    """A JSON list of objects, decoded one element at a time so that each keeps the line it starts on."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        raise ObservationError(path, _line(text, i), "json", "expected a list of observation objects")
    i = _skip_ws(text, i + 1)
    rows: list[RawRow] = []
    if i < len(text) and text[i] == "]":
        return _trailing(path, text, i + 1, rows)
    while True:
        line = _line(text, i)
        try:
            item, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ObservationError(path, exc.lineno, "json", f"malformed JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise ObservationError(path, line, "json", f"expected an object, got {type(item).__name__}")
        rows.append((line, {str(k).strip().lower(): _json_cell(path, line, str(k), v) for k, v in item.items()}))
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            return _trailing(path, text, i + 1, rows)
        raise ObservationError(path, _line(text, i), "json", "malformed JSON: expected ',' or ']' after an object")


def _trailing(path: Path, text: str, i: int, rows: list[RawRow]) -> list[RawRow]:
    j = _skip_ws(text, i)
    if j < len(text):
        raise ObservationError(path, _line(text, j), "json", "malformed JSON: text after the closing ']'")
    return rows


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _line(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1
