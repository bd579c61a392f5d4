"""What a signed-in person's page or form refuses becomes a page with its status, never a
500 and never the API's JSON: a rule of the domain, a malformed field, a refused form."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from servicekit.errors import ApiError
from services.keys.console.caller import SignedIn, caller_of, console
from services.keys.console.context import KEYS_PAGE, Console
from services.keys.console.forms import FormInvalid, field_errors
from services.keys.domain import errors
from services.keys.entrypoints.http import STATUS_OF_CODE

REFUSALS = (errors.DomainError, FormInvalid, ValidationError, ApiError)


class RefusalPages(APIRoute):
    """The route class of the pages a signed-in person sees (FastAPI's custom APIRoute):
    a refusal raised by the handler or by a dependency after sign-in (e.g. the CSRF
    check) is answered as the error page, with the person still shown as signed in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except REFUSALS as refused:
                me = caller_of(request)
                if me is None:  # refused before anybody was signed in: not ours to show
                    raise
                return refusal_page(console(request), request, me, refused)

        return answer


def refusal_page(
    console: Console, request: Request, me: SignedIn, refused: Exception
) -> HTMLResponse:
    title, shown = "Not done", {}
    if isinstance(refused, errors.DomainError):
        status, message = STATUS_OF_CODE.get(refused.code, 400), refused.message
        if isinstance(refused, errors.AlreadyDone):  # e.g. a page that was refreshed
            title, shown = "Already done", {"key_link": f"{KEYS_PAGE}/{refused.key_id}"}
    elif isinstance(refused, FormInvalid):
        status, message = 422, _listed(refused.fields)
    elif isinstance(refused, ValidationError):  # e.g. a reason the contracts refuse
        status, message = 422, _listed(field_errors(refused))
    elif isinstance(refused, ApiError):
        status, message = refused.status, refused.message
    else:
        raise refused
    return console.page(request, "error.html", me, status, title=title, message=message, **shown)


def _listed(fields: dict[str, str]) -> str:
    return "; ".join(f"{field}: {message}" for field, message in fields.items())
