"""Reading a data file's text (gunzipped, UTF-8, no BOM) and parsing JSON within bounds: every failure is one
DataError line naming the file (and the line for JSON Lines)."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.data.examples import DataError


def read_text(path: Path) -> str:
    """The file's text (gunzipped when gzip-compressed), or a one-line DataError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    where = ""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
        where = " of the decompressed data"
    if not raw.strip():
        raise DataError(f"{path}: file is empty" + (" after decompression" if where else ""))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}{where} (line {line}): {e.reason}") from None
    return text.removeprefix("\ufeff")


class JSONLimit(ValueError):
    """A JSON document beyond what qaflow reads: a number too long, or nesting too deep for the parser."""


def loads_bounded(text: str) -> Any:
    """`json.loads` within the interpreter's bounds, each refused as one `JSONLimit` (a ValueError) line: an
    integer longer than `sys.get_int_max_str_digits()` (4,300 digits) and nesting deeper than the recursion limit
    (about a thousand levels). A malformed document raises JSONDecodeError as usual."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JSONLimit("JSON nested too deeply (about a thousand levels at most)") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise JSONLimit(f"a number longer than {sys.get_int_max_str_digits()} digits") from None


def _json_error(path: Path, text: str, e: json.JSONDecodeError) -> DataError:
    at_end = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
    truncated = " (the file looks truncated)" if at_end else ""
    return DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}{truncated}")


def read_json_file(path: str | Path) -> Any:
    """Parse a (possibly gzipped) JSON file; a missing/empty/bad-UTF-8/malformed file is one DataError line."""
    p = Path(path)
    text = read_text(p)
    try:
        return loads_bounded(text)
    except json.JSONDecodeError as e:
        raise _json_error(p, text, e) from None
    except JSONLimit as e:
        raise DataError(f"{p}: {e}") from None


def json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line. Splits on \\n only: U+2028 may appear inside strings."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = loads_bounded(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
        except JSONLimit as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        yield lineno, value


def _looks_like_json_lines(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        return isinstance(loads_bounded(first), dict)
    except ValueError:
        return False


def parse_json_document(path: Path, text: str) -> tuple[str, Any]:
    """("json", value) or, for a JSON Lines file with a .json-like suffix, ("jsonl", None)."""
    try:
        return "json", loads_bounded(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and _looks_like_json_lines(text):
            return "jsonl", None
        raise _json_error(path, text, e) from None
    except JSONLimit as e:
        raise DataError(f"{path}: {e}") from None
