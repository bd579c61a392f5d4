"""What a route of the audit or usage API is given through `Depends`: the caller, and
what the service's bootstrap put in `app.state`.

The bearer access key is checked by the keys service (servicekit.callers), through the
`CallerDirectory` the service's bootstrap puts at `app.state.callers`. `Bearer` declares
the scheme in the OpenAPI document; the check is ours, so that every refusal is the
shared error body (401 with `WWW-Authenticate: Bearer`, 403 for a missing scope).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from servicekit.callers import Caller, CallerDirectory

bearer = HTTPBearer(
    auto_error=False, description="An access key of the account: `Authorization: Bearer ig_...`"
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def caller_with(
    scope: str,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Caller]]:
    """A dependency answering the caller, whose key must have `scope`."""

    async def caller(request: Request, _: Bearer) -> Caller:
        directory: CallerDirectory = request.app.state.callers
        return await directory.authenticate(request.headers.get("authorization"), scope)

    return caller


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency answering `app.state.<name>`, as the bootstrap set it."""

    def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read
