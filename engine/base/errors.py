"""Showing a user's value inside an error message: quoted, and never longer than a line."""

from __future__ import annotations

HUGE = 2**128  # past this an integer is refused before any float conversion (which overflows at ~1e308)


def shown_value(value: object, limit: int = 80) -> str:
    """A value for an error message: repr, shortened; a huge integer by its number of digits (Python refuses
    to turn integers of over 4300 digits into text)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > HUGE:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def shown_number(value: float) -> str:
    """A number as typed, every digit kept (`-4.0000001`, not `:g`'s `-4`), a whole float without `.0`."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def first_line(exc: BaseException) -> str:
    """An exception as `Type: its first line` (libraries' messages run to pages), for a message to a person."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else 'no message'}"
