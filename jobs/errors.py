"""Exceptions that decide a job's outcome: retry later, fail now, or stop."""

from __future__ import annotations


class JobError(Exception):
    """Base of the errors a processor raises on purpose."""


class TransientError(JobError):
    """Worth retrying: the job goes to `retrying` with backoff (no earlier than `retry_after`)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """Retrying cannot help (bad payload, revoked grant): the job fails at once."""


class PayloadError(PermanentError, ValueError):
    """A payload does not match its kind's declared shape."""


class UnknownKindError(PermanentError, LookupError):
    """No processor is registered for a kind."""


class DeadlineExceeded(TransientError):
    """A processor passed its cooperative deadline without stopping on its own."""


class LeaseLost(Exception):
    """This worker no longer holds the job's lease (tick gave it to another attempt): every write
    of the run stops, and nothing it did after losing the lease is kept."""


class JobCancelled(Exception):
    """An operator cancelled a running job; raised at the processor's next checkpoint."""
