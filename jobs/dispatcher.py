"""The processor registry: `@processor("kind")` fills a plain dict of kind -> function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.errors import UnknownKindError
from jobs.payloads import EmptyPayload, Payload

if TYPE_CHECKING:
    from jobs.context import JobContext, Metrics
    from jobs.models import Job

ProcessorFunc = Callable[["Job", "JobContext"], "Metrics"]


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    kind: str
    func: ProcessorFunc
    payload: type[Payload] = EmptyPayload
    max_attempts: int | None = None
    # A kind with a lane gets this dedupe key by default: a format string filled with
    # "{user_id}", "{kind}" and the payload's fields (e.g. "gmail_sync:{account_id}").
    lane: str | None = None

    def parse_payload(self, data: Any) -> Payload:
        return self.payload.from_dict(data)

    def lane_key(self, *, user_id: int, payload: dict[str, Any]) -> str | None:
        """The lane (default dedupe key) of a job of this kind, or None for a kind without one."""
        if self.lane is None:
            return None
        return self.lane.format_map({**payload, "user_id": user_id, "kind": self.kind})


REGISTRY: dict[str, ProcessorSpec] = {}


def processor(
    kind: str,
    *,
    payload: type[Payload] = EmptyPayload,
    max_attempts: int | None = None,
    lane: str | None = None,
) -> Callable[[ProcessorFunc], ProcessorFunc]:
    """Register `func` as the processor of `kind` (one kind, one function)."""

    def register(func: ProcessorFunc) -> ProcessorFunc:
        existing = REGISTRY.get(kind)
        if existing is not None and existing.func is not func:
            raise RuntimeError(f"job kind {kind!r} is already registered by {existing.func!r}")
        REGISTRY[kind] = ProcessorSpec(
            kind=kind, func=func, payload=payload, max_attempts=max_attempts, lane=lane
        )
        return func

    return register


def get_processor(kind: str) -> ProcessorSpec:
    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise UnknownKindError(f"unknown job kind {kind!r} (registered: {known})") from None


def autodiscover() -> None:
    """Import every installed app's `processors` module (or package) so its kinds register."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("processors")
