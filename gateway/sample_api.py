"""A stand-in for the InstaGen model API behind a gateway: it answers a generation and
echoes what the gateway told it about the caller's key (the ``X-Key-*`` headers).

``python -m gateway.sample_api`` serves it on ``SAMPLE_API_PORT`` (default 8090).
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI(title="Sample InstaGen model API", docs_url=None, redoc_url=None)
FORWARDED = ("x-key-id", "x-account-id", "x-key-environment", "x-key-scopes", "x-request-id")


@app.api_route("/{path:path}", methods=["GET", "POST"])
async def generate(path: str, request: Request) -> dict[str, object]:
    """Any path: a fake generation, with the key headers the gateway passed upstream."""
    return {
        "path": f"/{path}",
        "model": "instagen-xl",
        "output": "An image of a lighthouse at dawn.",
        "gateway": {name: request.headers.get(name) for name in FORWARDED},
        "authorization_seen": "authorization" in request.headers,
    }


if __name__ == "__main__":
    port = int(os.environ.get("SAMPLE_API_PORT", "8090"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
