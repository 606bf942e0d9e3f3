"""The checks every request passes before an endpoint runs: api key, body size, and counting.

A plain ASGI middleware on purpose: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``)
hands the endpoint a wrapped ``receive`` that never reports the client's disconnect, so a
client that gave up on a whole (non-streamed) response would keep its row decoding to the end.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen3core.serving.errors import ApiError


class Guard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int,
                 count_request: Callable[[str, int], None]):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.count_request = count_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope["path"], Headers(scope=scope))
        status = 500  # what the client gets if the app raises before it answers

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            self.count_request(scope["path"], status)

    def refusal(self, path: str, headers: Headers) -> JSONResponse | None:
        if path.startswith("/v1/") and self.api_key is not None:
            given = headers.get("authorization", "")
            expected = f"Bearer {self.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                error = ApiError(401, "missing or wrong api key: send "
                                      "'Authorization: Bearer <key>'",
                                 type="authentication_error", code="invalid_api_key")
                return JSONResponse(error.body(), status_code=401)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            error = ApiError(413, f"the request body is larger than {self.max_body_bytes} "
                                  f"bytes", code="request_too_large")
            return JSONResponse(error.body(), status_code=413)
        return None
