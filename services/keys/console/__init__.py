"""The browser console of the key service: Account Settings > InstaGen Access Key.

Server-rendered pages (Jinja2, autoescaped) with plain HTML forms, so every flow works
with the keyboard alone and without a script; one small script of our own adds the copy
button and the naming helpers. Nothing is fetched from elsewhere at run time, and the
Content-Security-Policy says so.

Each page is a module of `pages/` with its routes on an APIRouter; the console's context
(`context.Console`) and the signed-in caller come from FastAPI dependencies (`caller`),
and what a page refuses is answered as a page (`refusals`). Changes go through the same
use cases as the HTTP API, with the signed-in key as the actor, so the events, the audit
log and the usage service see a console action exactly as they see an API call. Audit and
usage data come from those services' own APIs, asked with the signed-in person's key.
"""
