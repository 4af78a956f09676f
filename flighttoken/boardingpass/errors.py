"""The one error a malformed boarding pass raises: 422 ``invalid_boarding_pass`` naming the field."""

from __future__ import annotations

from flighttoken.errors import Unprocessable


class InvalidBoardingPass(Unprocessable):
    """``field`` is the Resolution 792 item that is missing or malformed (also in the problem body)."""

    code = "invalid_boarding_pass"
    title = "The boarding pass cannot be read"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"boarding pass {field}: {detail}", field=field)
        self.field = field
