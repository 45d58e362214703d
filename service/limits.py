"""A cap on request body size, checked before the body is parsed or spooled to disk."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    pass


def _body(limit: int) -> bytes:
    message = f"the request body is larger than the limit of {limit} bytes"
    return json.dumps({"error": {"code": "too_large", "message": message, "field": None}}).encode()


class BodySizeLimit:
    """413 for bodies over `limit` bytes: by Content-Length up front, or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _reject(self, send: Send) -> None:
        body = _body(self.limit)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._reject(send)
                    return
        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def checked_send(message: Message) -> None:
            # The body parser may turn our exception into its own 4xx: answer 413 instead.
            nonlocal replaced
            if exceeded and message["type"] == "http.response.start":
                replaced = True
                await self._reject(send)
                return
            if replaced:
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except _TooLarge:
            if not replaced:
                await self._reject(send)
