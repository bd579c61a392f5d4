"""The console's pages, one module each, declared on APIRouters; ROUTERS in the order they
are matched (a fixed address such as .../access-keys/new before .../access-keys/{key_id})."""

from services.keys.console.pages import (
    audit,
    home,
    key_page,
    key_secret,
    key_status,
    keys_list,
    new_key,
    sign_in,
    usage,
    webhooks,
)

ROUTERS = (
    home.router,
    sign_in.router,
    keys_list.router,
    new_key.router,
    key_page.router,
    key_status.router,
    key_secret.router,
    usage.router,
    webhooks.router,
    audit.router,
)
