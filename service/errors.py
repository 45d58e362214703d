"""One error format for every 4xx/5xx: {"error": {"code", "message", "field"}}.

Routes raise ApiError (or its helpers); FastAPI's own HTTP and validation errors and the
model's user-facing errors are translated here, so no client-caused problem becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.errors import ImageDecodeError, ReidError

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered to the client as-is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra or {}
        self.headers = headers

    def detail(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


def invalid(message: str, field: str | None = None, code: str = "invalid") -> ApiError:
    return ApiError(422, code, message, field)


def not_found(message: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", message, field)


def error_response(
    status: int, code: str, message: str, field: str | None = None, extra: dict | None = None, headers=None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(loc: tuple | list) -> str | None:
    # a repeated field's position (gallery_id.1) is not a field name: the field is gallery_id
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form") and not isinstance(p, int)]
    return ".".join(parts) or None


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.extra, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and "parsing the body" in message:
        message = "the request body could not be parsed (expected multipart/form-data or JSON)"
    code = _CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    field = _field_of(first.get("loc", ()))
    message = first.get("msg", "invalid request")
    if first.get("type") == "value_error":  # our validators' own words, without pydantic's prefix
        message = message.removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = f"missing required field {field!r}" if field else "missing required field"
        code = "missing"
    else:
        message = f"{field}: {message}" if field else message
        code = "invalid"
    return error_response(422, code, message, field)


async def _reid_error(request: Request, exc: ReidError) -> JSONResponse:
    from service.vectorstore.base import SearchIncompleteError

    if isinstance(exc, SearchIncompleteError):  # never a silently short answer: say so, retry later
        logger.warning("search could not be completed: %s", exc)
        return error_response(503, "unavailable", str(exc))
    code = "bad_image" if isinstance(exc, ImageDecodeError) else "invalid"
    return error_response(422, code, str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ReidError, _reid_error)
    app.add_exception_handler(Exception, _unexpected)
