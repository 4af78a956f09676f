"""Where a signature check of a boarding pass plugs in (Resolution 792 security data).

The parser keeps the signature (``BoardingPass.security``) and the text it covers
(``BoardingPass.signed_text``); checking it needs the issuing airline's public key, which the
service does not hold today. A deployment that has them provides a :class:`PassVerifier`.
"""

from __future__ import annotations

from typing import Protocol

from flighttoken.boardingpass.bcbp import BoardingPass


class PassVerifier(Protocol):
    def verify(self, boarding_pass: BoardingPass) -> bool:
        """True when the pass carries a valid signature of its issuer over ``signed_text``."""
        ...


def signature_valid(boarding_pass: BoardingPass, verifier: PassVerifier | None) -> bool | None:
    """None without a verifier (not checked), else the verifier's answer (False when unsigned)."""
    if verifier is None:
        return None
    return boarding_pass.security is not None and verifier.verify(boarding_pass)
