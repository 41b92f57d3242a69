"""Google API error responses, shaped exactly as Google's JSON error envelope."""

from __future__ import annotations

from dataclasses import dataclass, field

# Google's canonical status names and default wording per HTTP status.
_STATUS_NAMES = {
    400: ("INVALID_ARGUMENT", "Bad Request"),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "Conflict"),
    410: ("GONE", "Resource has been deleted"),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Backend Error"),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}

_REASON_DOMAINS = {
    "userRateLimitExceeded": "usageLimits",
    "rateLimitExceeded": "usageLimits",
    "dailyLimitExceeded": "usageLimits",
    "fullSyncRequired": "calendar",
}


@dataclass(eq=False)
class ApiError(Exception):
    """An error a handler raises; the server turns it into Google's JSON error body."""

    status: int
    reason: str
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    def body(self) -> dict:
        status_name, default_message = _STATUS_NAMES.get(self.status, ("UNKNOWN", "Error"))
        message = self.message or default_message
        detail = {
            "message": message,
            "domain": _REASON_DOMAINS.get(self.reason, "global"),
            "reason": self.reason,
            **self.extra,
        }
        return {
            "error": {
                "code": self.status,
                "message": message,
                "errors": [detail],
                "status": status_name,
            }
        }


def not_found(message: str = "Requested entity was not found.") -> ApiError:
    return ApiError(404, "notFound", message)


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, "invalidArgument", message)


def unauthenticated() -> ApiError:
    return ApiError(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
        extra={"location": "Authorization", "locationType": "header"},
    )


def insufficient_scopes() -> ApiError:
    return ApiError(
        403,
        "insufficientPermissions",
        "Request had insufficient authentication scopes.",
        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
    )


def sync_token_expired() -> ApiError:
    return ApiError(
        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
    )


def rate_limited(status: int, reason: str | None, retry_after: float | None) -> ApiError:
    """A quota error: 429 rateLimitExceeded or 403 user/rateLimitExceeded."""
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
    reason = reason or ("userRateLimitExceeded" if status == 403 else "rateLimitExceeded")
    message = (
        "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" else "Rate Limit Exceeded"
    )
    return ApiError(status, reason, message, headers=headers)


def server_error(status: int, retry_after: float | None = None) -> ApiError:
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
    return ApiError(status, "backendError", headers=headers)


def _seconds(value: float) -> str:
    return str(max(0, round(value)))


class OAuthError(ApiError):
    """An OAuth 2.0 endpoint error: a flat {"error", "error_description"} body."""

    def body(self) -> dict:
        return {"error": self.reason, "error_description": self.message}


def invalid_grant(message: str = "Token has been expired or revoked.") -> OAuthError:
    return OAuthError(400, "invalid_grant", message)
