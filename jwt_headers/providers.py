"""Several identity providers for one source: a token goes to the provider its ``iss`` names.

Routing reads the token's (not yet verified) ``iss`` only to choose whose checks run; the chosen
provider's key set alone can then verify the signature, and its issuer check compares ``iss``
exactly again, so a token that names provider A but is signed by provider B's key is refused as a
bad signature, never accepted by B. An ``iss`` no provider has is refused at once: no key set is
fetched and no discovery request is made for it (R33).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .decode import Document
from .errors import InvalidToken
from .jwks import JwksClient
from .verify import TokenVerifier


class ProviderRouter:
    """Runs the checks of the provider whose issuer is the token's exact ``iss``."""

    def __init__(self, by_issuer: Mapping[str, TokenVerifier]) -> None:
        self.by_issuer = dict(by_issuer)

    def route(self, document: Document) -> TokenVerifier:
        """The provider's verifier for this token; refuses an issuer no provider has."""
        issuer = document.claims.get("iss")
        verifier = self.by_issuer.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise InvalidToken("unknown_issuer", "token issuer is not one of the providers")
        return verifier

    def __call__(self, document: Document) -> float | None:
        return self.route(document)(document)

    def key_sets(self) -> Iterator[JwksClient]:
        """Each provider's key set (R41 hooks every one)."""
        for verifier in self.by_issuer.values():
            if verifier.jwks is not None:
                yield verifier.jwks
