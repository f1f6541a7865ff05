"""Steam appids from text: ASCII digits only, positive, within what Steam assigns.

Python's ``str.isdigit`` and ``int`` accept Unicode digits ("²", "٣") and ``int(1.5)`` truncates,
so every place that reads an appid from a request, a command line or a data file asks here.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_APPID", "appid_or_none", "is_appid_text"]

#: Steam appids are unsigned 32-bit numbers
MAX_APPID = 2**32 - 1


def is_appid_text(text: str) -> bool:
    """True when ``text`` (already stripped) is ASCII digits naming a valid appid."""
    # isascii() first: isdigit() alone takes "²" and "٣" (a request checks thousands of these)
    return text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) <= MAX_APPID


def appid_or_none(value: Any) -> int | None:
    """An appid from an int, an integral float or ASCII-digit text; None when it is not one.

    Booleans, fractions (1.5), non-finite numbers, negatives, zero, values past
    :data:`MAX_APPID` and non-ASCII digits are not appids.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_APPID else None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        return appid_or_none(int(value))
    if isinstance(value, str):
        text = value.strip()
        return int(text) if is_appid_text(text) else None
    return None
