"""Text as qaflow accepts it (`text_problem`, `check_text`: the one rule for data files, `qaflow answer` and the
served model) and the small helpers that quote text and name JSON types in one-line messages."""

from __future__ import annotations

from typing import Any

from tasks.core.data.examples import DataError


def quoted(text: str, limit: int = 60) -> str:
    """Quoted, escaped, shortened text for one-line messages."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def json_kind(value: Any) -> str:
    """JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# characters that print as nothing although Python counts them printable (blank Braille, Hangul fillers)
_BLANK_LETTERS = frozenset("\u2800\u3164\u115f\u1160\uffa0")


def _visible(text: str) -> bool:
    """Whether `text` shows anything: not only whitespace, control, format (zero-width) or blank characters."""
    return any(ch.isprintable() and not ch.isspace() and ch not in _BLANK_LETTERS for ch in text)


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text` (no UTF-8 encoding exists for it), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def text_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be used as the `what` of a question (e.g. "question", "context"), or None when it can.

    Refused: text that shows nothing (empty, only whitespace, zero-width or control characters) and text with a
    lone surrogate (not Unicode text: no tokenizer or UTF-8 file can hold it). The same rule for data files,
    `qaflow answer` and the served model.
    """
    lone = lone_surrogate(text)
    if lone is not None:
        return f"lone surrogate U+{ord(text[lone]):04X} at character {lone} (not valid Unicode text)"
    if not _visible(text):
        shown = "empty" if not text else "only whitespace, zero-width or control characters"
        return f"empty {what} ({shown})"
    return None


def check_text(text: Any, field: str, what: str) -> str:
    """`text` itself when it is usable (`text_problem`); DataError naming `field` otherwise."""
    if not isinstance(text, str):
        raise DataError(f"{field}: expected a string, got {json_kind(text)}")
    problem = text_problem(text, what)
    if problem:
        raise DataError(f"{field}: {problem}")
    return text
