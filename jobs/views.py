"""Endpoints for machines: /health/ for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobs.config import get_config

logger = logging.getLogger(__name__)

# A positive migrations check is trusted this long (loading the migration graph is the
# expensive part of a health check; new migrations come with a restart anyway).
MIGRATIONS_CHECK_TTL_S = 60.0
_migrations_ok_until = 0.0


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return ""


def _broker() -> str:
    if get_config().handoff == "none":
        return "no broker: jobs are run by runjobs (handoff none)"
    from django_q.brokers import get_broker

    broker = get_broker()
    # The Redis broker's ping talks to Redis; the ORM broker's says True, so its queue is read.
    if not broker.ping():
        raise ConnectionError("the broker did not answer")
    broker.queue_size()
    return broker.info()


def _migrations() -> str:
    global _migrations_ok_until
    if time.monotonic() < _migrations_ok_until:
        return ""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        raise RuntimeError(
            f"{len(plan)} migration(s) not applied (first: {first.app_label}.{first.name})"
        )
    _migrations_ok_until = time.monotonic() + MIGRATIONS_CHECK_TTL_S
    return ""


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "broker": _broker,
    "migrations": _migrations,
}


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok", "checks": {...}} when every check passes, else 503 naming the
    failed ones. Errors are named by type only (the log has the detail): the endpoint is
    usually reachable without signing in."""
    checks: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        try:
            detail = check()
        except Exception as exc:
            logger.warning("health check %s failed: %s", name, exc)
            message = str(exc) if name == "migrations" else f"{name} unreachable"
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {message}"}
        else:
            checks[name] = {"ok": True, **({"detail": detail} if detail else {})}
    failed = [name for name, result in checks.items() if not result["ok"]]
    return JsonResponse(
        {"status": "fail" if failed else "ok", "failed": failed, "checks": checks},
        status=503 if failed else 200,
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The pipeline's metrics in Prometheus' text format (jobs.metrics), computed from the
    database now. With settings.CRM_PIPELINE_METRICS_TOKEN set, only a request carrying
    "Authorization: Bearer <token>" gets them."""
    token = getattr(settings, "CRM_PIPELINE_METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse(
                "a bearer token is required\n", status=401, content_type="text/plain"
            )
    from jobs.metrics import REGISTRY

    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
