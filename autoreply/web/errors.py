"""HTTP errors: the service's own AutoreplyErrors and the handlers that render every error as
``{"error": {"type": ..., "message": ...}}``.

AutoreplyError                  status  type
 ├── NotFoundError              404     not_found
 ├── OwnershipError             403     not_owner
 ├── ConflictError              409     conflict
 ├── KnowledgeError / Invalid   422     knowledge_invalid (+ problems: [{file, line, field, ...}])
 ├── StoreError, EncoderError,  503     unavailable
 │   IndexStateError
 └── ApiError (here)            its own status and type:
      ├── Unauthorized          401     unauthorized (+ WWW-Authenticate: Bearer)
      ├── Forbidden             403     forbidden
      ├── TooLarge              413     too_large
      ├── Invalid               422     invalid
      ├── ProhibitedPhrase      422     prohibited_phrase (+ phrase)
      └── RateLimited           429     rate_limited (+ Retry-After)
Request validation errors, and JSON bodies that cannot be read (not UTF-8, nested too deeply),
are 422 ``invalid`` with ``errors: [{field, problem}]``; a channel's or the webhook's refused
signature is 401 with its kind as the type (``missing_signature``, ``bad_signature``,
``stale_timestamp``, ``bad_token``, ...: ``channels.base.Rejected``); HTTP errors from routing
(404, 405) keep their status with type ``http``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from autoreply.errors import (
    AutoreplyError,
    ConflictError,
    EncoderError,
    IndexStateError,
    KnowledgeError,
    KnowledgeInvalid,
    NotFoundError,
    OwnershipError,
    StoreError,
)

log = logging.getLogger("autoreply.api")


class ApiError(AutoreplyError):
    """An error that only exists at the HTTP edge; carries its status and type."""

    status = 400
    type = "bad_request"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status, type = 403, "forbidden"


class TooLarge(ApiError):
    status, type = 413, "too_large"


class Invalid(ApiError):
    status, type = 422, "invalid"


class ProhibitedPhrase(ApiError):
    status, type = 422, "prohibited_phrase"

    def __init__(self, phrase: str) -> None:
        super().__init__(
            f"the reply contains the prohibited phrase '{phrase}' and was not sent; "
            "rephrase it and send again (the interception is recorded)",
            phrase=phrase,
        )


class RateLimited(ApiError):
    status, type = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, retry_after=self.retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# Most specific first: the first match decides.
_STATUS: list[tuple[type[AutoreplyError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (OwnershipError, 403, "not_owner"),
    (ConflictError, 409, "conflict"),
    (KnowledgeError, 422, "knowledge_invalid"),
    (StoreError, 503, "unavailable"),
    (EncoderError, 503, "unavailable"),
    (IndexStateError, 503, "unavailable"),
]


def error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **extra}}


def error_response(exc: AutoreplyError) -> JSONResponse:
    """The JSON response for any AutoreplyError."""
    if isinstance(exc, ApiError):
        body = error_body(exc.type, str(exc), **exc.extra)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers())
    status, type_ = 500, "internal"
    for kind, code, name in _STATUS:
        if isinstance(exc, kind):
            status, type_ = code, name
            break
    extra: dict[str, Any] = {}
    if isinstance(exc, KnowledgeInvalid):
        extra["problems"] = [p.to_dict() for p in exc.problems]
    if status >= 500:
        log.error("request failed: %s", exc, extra={"error": type(exc).__name__})
    return JSONResponse(error_body(type_, str(exc), **extra), status_code=status)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as ``{field, problem}``, body-level ones said plainly."""
    kind, loc = error.get("type", ""), tuple(error.get("loc", ()))
    if kind == "json_invalid":
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        detail = (error.get("ctx") or {}).get("error", "")
        return {
            "field": "body",
            "problem": f"the request body is not valid JSON{where}: {detail}".rstrip(": "),
        }
    if loc == ("body",) and kind == "missing":
        return {"field": "body", "problem": "the request body is empty; send a JSON object"}
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type", "model_type"):
        return {"field": "body", "problem": "the request body must be a JSON object"}
    return {"field": _field(loc), "problem": str(error.get("msg", ""))}


def validation_problems(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI error details as ``[{field, problem}]``."""
    return [_problem(dict(e)) for e in errors]


def _unreadable_body(cause: BaseException | None) -> str | None:
    """Why FastAPI could not read a JSON body ("There was an error parsing the body")."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not valid UTF-8 (byte {cause.start}); send JSON as UTF-8"
    if isinstance(cause, RecursionError):
        return "the request body is nested too deeply to read; send flatter JSON"
    if isinstance(cause, ValueError):  # e.g. an integer with more than 4300 digits
        return f"the request body is not valid JSON: {cause}"
    return None


def install_error_handlers(app: FastAPI) -> None:
    """One handler for AutoreplyError; validation and routing errors in the same JSON shape."""

    @app.exception_handler(AutoreplyError)
    async def _autoreply(request: Request, exc: AutoreplyError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = validation_problems(exc.errors())
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and any(p["field"] == "body" for p in problems):
            # Strict content types (FastAPI's CSRF guard): say so instead of "not an object".
            got = f"'{content_type}'" if content_type else "none"
            problems = [
                {
                    "field": "body",
                    "problem": "send the body as JSON with 'Content-Type: application/json' "
                    f"(got {got})",
                }
            ]
        message = "; ".join(
            p["problem"] if p["field"] == "body" else f"{p['field']}: {p['problem']}"
            for p in problems
        )
        return JSONResponse(error_body("invalid", message, errors=problems), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and (problem := _unreadable_body(exc.__cause__)):
            errors = [{"field": "body", "problem": problem}]
            return JSONResponse(error_body("invalid", problem, errors=errors), status_code=422)
        return JSONResponse(
            error_body(getattr(exc, "kind", "http"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": error_body(t, text)}}}
    for code, t, text in [
        (401, "unauthorized", "missing, unknown, expired or disabled bearer token"),
        (403, "not_owner", "another agent owns the ticket, or the route needs an admin"),
        (404, "not_found", "no such ticket, message or agent"),
        (409, "conflict", "the ticket's state forbids the action (e.g. claimed by another)"),
        (422, "invalid", "malformed JSON or fields"),
        (429, "rate_limited", "too many requests; retry after Retry-After seconds"),
    ]
}
"""Documented error responses for the OpenAPI schema."""
