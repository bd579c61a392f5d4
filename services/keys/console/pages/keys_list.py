"""Account Settings > Access keys: the account's keys, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.keys.console.caller import Caller, ConsoleContext
from services.keys.console.context import DONE_MESSAGES, KEYS_PAGE
from services.keys.console.reads import unused
from services.keys.console.refusals import RefusalPages
from services.keys.entrypoints.http import key_list_page

router = APIRouter(include_in_schema=False, route_class=RefusalPages)


@router.get(KEYS_PAGE)
async def list_page(
    request: Request,
    console: ConsoleContext,
    me: Caller,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    listed = await key_list_page(console.ctx.pool(), me.account_id, 50, cursor, None)
    return console.page(
        request, "keys.html", me, keys=listed.items, more=listed.next_cursor, unused=unused,
        notice=DONE_MESSAGES.get(done or ""), tab="keys",
    )  # fmt: skip
