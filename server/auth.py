"""Bearer-token auth for the HTTP transport: static tokens (environment or a file) and JWTs checked by
fastmcp's ``JWTVerifier``. Tokens are compared in constant time; a JWT that fails is simply refused."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.auth.providers.jwt import JWTVerifier
from starlette.middleware import Middleware

from server.messages import BearerErrorText
from server.settings import Settings

log = logging.getLogger(__name__)


class BearerVerifier(TokenVerifier):
    """Accepts a request whose bearer token is one of ``tokens`` or a JWT the ``jwt`` verifier accepts."""

    def __init__(self, tokens: list[str], jwt: JWTVerifier | None = None) -> None:
        super().__init__()
        self.tokens = [t for t in tokens if t]
        self.jwt = jwt

    def get_middleware(self) -> list:
        # Our own text for a refused token (fastmcp's asks the client to "re-register", an OAuth step).
        return [*super().get_middleware(), Middleware(BearerErrorText)]

    async def verify_token(self, token: str) -> AccessToken | None:
        for i, known in enumerate(self.tokens):
            if hmac.compare_digest(token.encode(), known.encode()):
                return AccessToken(token=token, client_id=f"static-{i + 1}", scopes=[], expires_at=None)
        if self.jwt is not None and token.count(".") == 2:
            return await self.jwt.verify_token(token)
        return None


def load_tokens(settings: Settings) -> list[str]:
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
    return BearerVerifier(tokens, jwt)
