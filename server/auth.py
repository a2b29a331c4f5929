"""Bearer-token auth for the HTTP transport: static tokens (environment or a file) and JWTs checked by
fastmcp's ``JWTVerifier``. Tokens are compared in constant time; a JWT that fails is simply refused.

A token says who the caller is and what it may do (docs/security.md). A static token entry is
``TOKEN [USER_ID|-] [SCOPE ...]`` (fields separated by spaces; entries by commas in ``ROUTINE_AUTH_TOKENS``, by
lines in ``ROUTINE_AUTH_TOKENS_FILE``). A JWT's user is its ``sub`` claim (``ROUTINE_JWT_USER_CLAIM``) and its
scopes are its ``scope``/``scp`` claim; a JWT must carry ``exp`` and may not be used before its ``nbf``. The
verified user id travels as the access token's ``subject``.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.auth.providers.jwt import JWTVerifier
from starlette.middleware import Middleware

from server.messages import BearerErrorText
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticToken:
    """One configured static token: the secret, the user it stands for (if any) and its scopes."""

    token: str
    user_id: str | None = None
    scopes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entry: str) -> StaticToken:
        """``TOKEN [USER_ID|-] [SCOPE ...]``; ``-`` (or nothing) for a token that stands for no user."""
        fields = entry.split()
        if not fields:
            return cls("")
        user = fields[1] if len(fields) > 1 and fields[1] != "-" else None
        return cls(fields[0], user, tuple(fields[2:]))


class BearerVerifier(TokenVerifier):
    """Accepts a request whose bearer token is one of ``tokens`` or a JWT the ``jwt`` verifier accepts and
    that has an ``exp`` and no ``nbf`` in the future (``leeway`` seconds of clock skew allowed)."""

    def __init__(self, tokens: list[str | StaticToken], jwt: JWTVerifier | None = None, *, user_claim: str = "sub",
                 leeway: float = 30.0) -> None:
        super().__init__()
        parsed = [t if isinstance(t, StaticToken) else StaticToken.parse(t) for t in tokens]
        self.tokens = [t for t in parsed if t.token]
        self.jwt = jwt
        self.user_claim = user_claim
        self.leeway = leeway

    def get_middleware(self) -> list:
        # Our own text for a refused token (fastmcp's asks the client to "re-register", an OAuth step).
        return [*super().get_middleware(), Middleware(BearerErrorText)]

    async def verify_token(self, token: str) -> AccessToken | None:
        for i, known in enumerate(self.tokens):
            if hmac.compare_digest(token.encode(), known.token.encode()):
                return AccessToken(token=token, client_id=f"static-{i + 1}", scopes=list(known.scopes),
                                   expires_at=None, subject=known.user_id)
        if self.jwt is not None and token.count(".") == 2:
            access = await self.jwt.verify_token(token)
            return None if access is None else self._check_jwt(access)
        return None

    def _check_jwt(self, access: AccessToken) -> AccessToken | None:
        claims: dict[str, Any] = access.claims
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _is_time(exp):
            log.info("JWT of %s refused: it has no exp claim (a token that never expires is not accepted)",
                     access.client_id)
            return None
        if exp + self.leeway < now:
            log.info("JWT of %s refused: it expired", access.client_id)
            return None
        if nbf is not None and (not _is_time(nbf) or nbf > now + self.leeway):
            log.info("JWT of %s refused: it is not valid before %s", access.client_id, nbf)
            return None
        user = claims.get(self.user_claim)
        subject = str(user) if isinstance(user, (str, int)) and not isinstance(user, bool) and str(user) else None
        return access.model_copy(update={"subject": subject})


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_tokens(settings: Settings) -> list[str]:
    """The configured static token entries (``TOKEN [USER_ID|-] [SCOPE ...]``), environment first."""
    tokens = [t.strip() for t in (settings.auth_tokens or "").split(",") if t.strip()]
    if settings.auth_tokens_file:
        path = Path(settings.auth_tokens_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ValueError(f"ROUTINE_AUTH_TOKENS_FILE {path} does not exist") from None
        tokens += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return tokens


def build_auth(settings: Settings) -> BearerVerifier | None:
    """The verifier the settings describe, or None when no auth is configured."""
    tokens = load_tokens(settings)
    jwt = None
    if settings.jwt_public_key or settings.jwt_jwks_uri:
        jwt = JWTVerifier(
            public_key=settings.jwt_public_key, jwks_uri=settings.jwt_jwks_uri, issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    if not tokens and jwt is None:
        return None
    return BearerVerifier(tokens, jwt, user_claim=settings.jwt_user_claim, leeway=settings.jwt_leeway)
