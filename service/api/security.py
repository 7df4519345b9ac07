"""Bearer-token authentication for every mutating endpoint.

With `api.token` (or `CEP_API_TOKEN`) set, a mutating request needs
`Authorization: Bearer TOKEN`; the token is compared in constant time
(`hmac.compare_digest`). Without a token configured the API is open, which is why the
server binds to 127.0.0.1 unless told otherwise. Reads (GET) stay open.
`service.api.limits` applies the same check to the headers before the body is read.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

AUTH_MISSING = "this endpoint needs the API token: send 'Authorization: Bearer <token>'"
AUTH_WRONG = "missing or wrong API token: send 'Authorization: Bearer <token>'"

bearer = HTTPBearer(
    auto_error=False,
    description="The API token (`api.token` in cep.toml or CEP_API_TOKEN); required by "
    "mutating endpoints when configured.",
)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    token: str | None = request.app.state.service.settings.api.token
    if not token:
        return
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            status_code=401,
            detail=AUTH_WRONG if given else AUTH_MISSING,
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)
