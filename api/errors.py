"""The API's one error format: {"error": {"code", "message", "fields"?, "required"?, "request_id"}}."""

from __future__ import annotations

from flask import g, jsonify
from werkzeug.exceptions import HTTPException

from shared.core import request_ids
from shared.core.errors import AuthError, ServiceError
from shared.core.ratelimits import RateLimited


def error_response(status: int, code: str, message: str, **extra):
    body = {"code": code, "message": message}
    body.update({key: value for key, value in extra.items() if value})
    body["request_id"] = request_ids.current()  # what a client quotes when it reports the error
    response = jsonify({"error": body})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="keyward"'
    return response


def service_error_response(error: ServiceError):
    if isinstance(error, AuthError):
        g.auth_refusal = error.code  # counted by the metrics hook
    response = error_response(error.status, error.code, error.message, fields=error.fields, **error.extra)
    if isinstance(error, RateLimited):
        response.headers.update(error.state.headers())
        response.headers["Retry-After"] = str(error.state.retry_after)
    return response


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "invalid_request"}


def http_error_response(error: HTTPException):
    code = _HTTP_CODES.get(error.code or 500, "error")
    message = {404: "Not found", 405: "Method not allowed"}.get(error.code, error.description or "Error")
    return error_response(error.code or 500, code, message)
