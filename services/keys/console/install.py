"""The console on the key service's app: its pages, its assets, and the two answers that
are not a page's own (a person not signed in, an address the console never made)."""

from __future__ import annotations

import inspect
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.keys.console.caller import SignInRequired, console
from services.keys.console.context import BASE, HERE, KEYS_PAGE, Console
from services.keys.console.pages import ROUTERS


def install(app: FastAPI, browser_console: Console) -> None:
    """Mount the console's pages and assets on the key service's app."""
    app.state.console = browser_console
    for router in ROUTERS:
        app.include_router(router)
    app.mount(f"{BASE}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
    api_handler = app.exception_handlers[RequestValidationError]

    async def malformed(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(BASE + "/"):
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return console(request).page(
            request, "error.html", None, 404, title="Not found",
            message="There is no such page: a link or an address was not one this console made.",
        )  # fmt: skip

    app.add_exception_handler(RequestValidationError, malformed)


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    query = {"next": getattr(exc, "back_to", KEYS_PAGE)}
    if notice := getattr(exc, "notice", None):
        query["notice"] = notice
    return RedirectResponse(f"{BASE}/sign-in?{urlencode(query)}", status_code=303)
