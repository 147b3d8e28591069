"""The exception hierarchy. Every error carries a stable code that the API returns.

::

    RemediatorError                      code
    ├── ConfigError                      CONFIG_INVALID
    ├── SealedUnreadable                 KEY_UNAVAILABLE
    ├── RequestError                     (HTTP-facing, carries a status)
    │   ├── MalformedJSON                MALFORMED_JSON        400
    │   ├── SchemaViolation              VALIDATION_FAILED     422
    │   │   └── ValidationFailed         VALIDATION_FAILED     422 (one line per problem)
    │   │       └── SecretDestinationChanged SECRET_DESTINATION_CHANGED 422
    │   ├── Unauthorized                 UNAUTHORIZED          401
    │   ├── Forbidden                    FORBIDDEN             403
    │   ├── BodyTooLarge                 PAYLOAD_TOO_LARGE     413
    │   ├── NotFound                     NOT_FOUND             404
    │   ├── ServiceNotFound              SERVICE_NOT_FOUND     404
    │   ├── NotQuarantined               NOT_QUARANTINED       404
    │   ├── MethodNotAllowed             METHOD_NOT_ALLOWED    405 (with ``Allow``)
    │   ├── PatternExists                PATTERN_EXISTS        409
    │   ├── CircuitOpen                  CIRCUIT_OPEN          409
    │   ├── Conflict                     (its own code)        409 (PAUSED, COOLDOWN, ...)
    │   ├── Missing                      (its own code)        404 (PLAYBOOK_NOT_FOUND, ...)
    │   ├── LinkUsed                     LINK_USED             410 (an approval email's link)
    │   ├── RateLimited                  RATE_LIMITED          429
    │   └── Unavailable                  SERVICE_UNAVAILABLE   503
    │       ├── StoreUnavailable         STORE_UNAVAILABLE     503
    │       └── Backlogged               BACKLOGGED            503 (Retry-After)
    └── RecoveryError                    RECOVERY_FAILED
        ├── TargetRefused                TARGET_REFUSED
        ├── CircuitBreakerError          CIRCUIT_OPEN
        ├── ArgumentRefused              ARGUMENT_REFUSED
        └── HostKeyMismatch              HOST_KEY_MISMATCH

Messages are written for the caller: they never carry stack traces, tokens or DSN credentials.
"""

from __future__ import annotations


class RemediatorError(Exception):
    """Base of every error remediator raises on purpose."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RemediatorError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    code = "CONFIG_INVALID"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class SealedUnreadable(RemediatorError):
    """A stored row is encrypted with a key the configuration no longer holds (a key dropped
    from ``audit.encryption_key_env`` too early, or encryption switched off)."""

    code = "KEY_UNAVAILABLE"


class RequestError(RemediatorError):
    """An error answered to an HTTP caller with ``status``."""

    status = 500


class MalformedJSON(RequestError):
    code = "MALFORMED_JSON"
    status = 400


class SchemaViolation(RequestError):
    code = "VALIDATION_FAILED"
    status = 422


class ValidationFailed(SchemaViolation):
    """422 with one line per problem in ``details``."""

    def __init__(self, details: list[str]) -> None:
        shown = details[0] if details else "invalid request"
        more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
        super().__init__(shown + more)
        self.details = details


class SecretDestinationChanged(ValidationFailed):
    """A configuration sent back with a redacted secret (``***``) whose destination (URL, host,
    DSN, the target of a playbook, ...) changed: one line per field in ``details``."""

    code = "SECRET_DESTINATION_CHANGED"


class Unauthorized(RequestError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(RequestError):
    code = "FORBIDDEN"
    status = 403


class NotFound(RequestError):
    code = "NOT_FOUND"
    status = 404


class ServiceNotFound(RequestError):
    code = "SERVICE_NOT_FOUND"
    status = 404


class NotQuarantined(RequestError):
    """Lifting the quarantine of a target that is not quarantined."""

    code = "NOT_QUARANTINED"
    status = 404


class MethodNotAllowed(RequestError):
    """A known path asked with a method it does not answer; ``allow`` lists the ones it does."""

    code = "METHOD_NOT_ALLOWED"
    status = 405

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class BodyTooLarge(RequestError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class PatternExists(RequestError):
    code = "PATTERN_EXISTS"
    status = 409


class CircuitOpen(RequestError):
    code = "CIRCUIT_OPEN"
    status = 409


class Conflict(RequestError):
    """409 with a specific code: a guard refused (PAUSED, COOLDOWN, ...), PATTERN_BUILTIN,
    NO_CONFIG_FILE (POST /-/reload without a configuration file)."""

    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Missing(RequestError):
    """404 with a specific code (PLAYBOOK_NOT_FOUND, PATTERN_NOT_FOUND)."""

    status = 404

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LinkUsed(RequestError):
    """410: an approval email's single-use link was used already."""

    code = "LINK_USED"
    status = 410


class RateLimited(RequestError):
    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(RequestError):
    code = "SERVICE_UNAVAILABLE"
    status = 503


class StoreUnavailable(Unavailable):
    """The store could not commit; nothing was acknowledged."""

    code = "STORE_UNAVAILABLE"


class Backlogged(Unavailable):
    """Too much is waiting (the notification outbox is over its cap): retry after a while."""

    code = "BACKLOGGED"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RecoveryError(RemediatorError):
    """A recovery action failed."""

    code = "RECOVERY_FAILED"


class TargetRefused(RecoveryError):
    """An action named a target that is not registered, or not of the right type."""

    code = "TARGET_REFUSED"


class CircuitBreakerError(RecoveryError):
    """The target's circuit breaker is open and rejects actions."""

    code = "CIRCUIT_OPEN"


class ArgumentRefused(RecoveryError):
    """An alert label may not fill a host command's argument (missing, too long, a control
    character, or not matching its regex): the command is not sent."""

    code = "ARGUMENT_REFUSED"


class HostKeyMismatch(RecoveryError):
    """An SSH host showed a key other than its pinned ``host_key``: nothing was sent to it."""

    code = "HOST_KEY_MISMATCH"
