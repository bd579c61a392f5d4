"""A key's secret handed out: the page that shows it once (after create, rotate or reveal)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.keys.app import use_cases
from services.keys.console.caller import SignedIn
from services.keys.console.context import Console
from services.keys.entrypoints.schemas import KeyView


def secret_page(
    console: Console, request: Request, me: SignedIn, outcome: use_cases.Outcome, how: str
) -> HTMLResponse:
    if outcome.secret is None:
        raise RuntimeError("this use case always returns the secret")
    return console.page(
        request, "secret.html", me, 201 if how == "created" else 200,
        key=KeyView.of(outcome.key), secret=outcome.secret.plaintext, how=how, tab="keys",
    )  # fmt: skip
