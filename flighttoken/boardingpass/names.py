"""Passenger names as BCBP encodes them, to tell whether a pass names a token's passenger.

A pass carries ``SURNAME/GIVEN NAMES`` in 20 characters, upper case, Latin letters only, cut at
20, sometimes with a title (MR, MRS...) after the given names. A token keeps the document's names.
Both are brought to that form and compared whole: a pass selects a token, the face decides.
"""

from __future__ import annotations

import re
import unicodedata

NAME_WIDTH = 20
TITLES = ("MR", "MRS", "MS", "MISS", "MSTR", "DR", "PROF", "CHD", "INF")


def _letters(text: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()
    return " ".join(re.sub(r"[^A-Z ]", " ", ascii_).split())


def bcbp_name(surname: str, given_names: str) -> str:
    """The name field a pass for this passenger carries: ``CHAN/TAI MAN``, cut at 20 characters."""
    given = _letters(given_names)
    full = f"{_letters(surname)}/{given}" if given else _letters(surname)
    return full[:NAME_WIDTH].rstrip()


def names_match(pass_name: str, surname: str, given_names: str) -> bool:
    """Whether a pass's name field names this passenger, allowing a title after the given names."""
    printed = " ".join(pass_name.upper().split())[:NAME_WIDTH]
    if printed == bcbp_name(surname, given_names):
        return True
    base = f"{_letters(surname)}/{_letters(given_names)}"
    return printed in {(base + sep + title)[:NAME_WIDTH].rstrip() for title in TITLES for sep in (" ", "")}
