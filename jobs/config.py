"""The operating rules, read from settings.CRM_PIPELINE with documented defaults.

Every key is a field of `PipelineConfig` with its default and, in its metadata, what a valid
value is: `{"min": a, "max": b}` (inclusive bounds of a number), `{"choices": (...)}` (allowed
values; for a list, allowed items; `"ignore_case": True` compares case-insensitively) or
`{"pattern": regex}` (a string, or each item of a list, must match in full); `"expected"` words
what a valid value is when the generated wording would not say it well. The type comes from
the annotation: int, float, bool, str, tuple[str, ...] (a JSON list) and `X | None`.

Other apps validate their own settings dict the same way: `settings_values()` for the values,
`AppSettings` for the cached config, its reset when the setting changes and its system check.

`config_problems()` lists every bad key with its value and what is expected; the system check
`jobs.E001` (jobs/checks.py) reports them at start-up, so `check`, `qcluster` and every other
command refuse a bad configuration, and `get_config()` raises `ImproperlyConfigured` with the same
text should one get past it (a setting changed at run time).
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    # Job engine
    job_wall_clock_cap_s: float = field(default=600.0, metadata={"min": 0, "max": DAY_S})
    job_max_attempts: int = field(default=5, metadata={"min": 1, "max": 100})
    backoff_base_s: float = field(default=2.0, metadata={"min": 0, "max": 3600})
    backoff_cap_s: float = field(default=600.0, metadata={"min": 0, "max": DAY_S})
    # A lease outlives the hard kill (cap + 60 s), so a live job never loses its lease.
    lease_grace_s: float = field(default=120.0, metadata={"min": 0, "max": DAY_S})
    # A queued job not claimed this long after its hand-off is offered to the broker again.
    reoffer_after_s: float = field(default=300.0, metadata={"min": 0, "max": DAY_S})
    cancel_check_interval_s: float = field(default=2.0, metadata={"min": 0, "max": 3600})
    # "django_q" hands each due job to the django-q2 broker; "none" leaves them for `runjobs`.
    handoff: str = field(default="django_q", metadata={"choices": ("django_q", "none")})
    tick_interval_minutes: int = field(default=1, metadata={"min": 1, "max": 1440})
    # `qcluster` on SIGTERM: running tasks get this long to finish, then the rest is killed
    # (keep it below systemd's TimeoutStopSec; see docs/DEPLOYMENT.md).
    cluster_stop_grace_s: float = field(default=30.0, metadata={"min": 0, "max": 3600})
    # Gmail (a batch request holds at most 50 parts for Gmail)
    gmail_chunk_size: int = field(default=50, metadata={"min": 1, "max": 50})
    gmail_chunk_pause_s: float = field(default=0.2, metadata={"min": 0, "max": 60})
    gmail_max_messages_per_run: int = field(default=2000, metadata={"min": 1, "max": 1_000_000})
    # Label ids (SPAM, TRASH, Label_12, ...): no whitespace.
    gmail_excluded_labels: tuple[str, ...] = field(
        default=("SPAM", "TRASH", "DRAFT", "CHAT"), metadata={"pattern": r"\S+"}
    )
    gmail_excluded_categories: tuple[str, ...] = field(
        default=(),
        metadata={
            "choices": (
                *("personal", "social", "promotions", "updates", "forums"),
                *("category_personal", "category_social", "category_promotions"),
                *("category_updates", "category_forums"),
            ),
            "ignore_case": True,
        },
    )
    # Calendar
    calendar_max_events_per_run: int = field(default=2000, metadata={"min": 1, "max": 1_000_000})
    calendar_pause_every_items: int = field(default=25, metadata={"min": 1, "max": 100_000})
    calendar_pause_s: float = field(default=0.05, metadata={"min": 0, "max": 60})
    # "all" | "primary" | comma-separated calendar ids: at least one id.
    calendar_selection: str = field(default="all", metadata={"pattern": r".*[^\s,].*"})
    calendar_window_past_days: int = field(default=180, metadata={"min": 0, "max": 36_500})
    calendar_window_future_days: int = field(default=365, metadata={"min": 0, "max": 36_500})
    # Google requests
    google_request_timeout_s: float = field(default=10.0, metadata={"min": 0.1, "max": 600})
    google_request_retries: int = field(default=3, metadata={"min": 0, "max": 20})
    # Incremental window
    initial_window_days: int = field(default=30, metadata={"min": 1, "max": 36_500})
    # The backfill after the first window: older mail and events back this many days
    # (0 = everything), at a lower priority than incremental syncs.
    backfill_horizon_days: int = field(default=730, metadata={"min": 0, "max": 36_500})
    window_overlap_s: float = field(default=300.0, metadata={"min": 0, "max": DAY_S})
    # Periodic sync
    periodic_sync_minutes: int = field(default=15, metadata={"min": 1, "max": 10_080})
    # Reconciliation (jobs/sync/reconcile.py): every active account is compared with what
    # Google lists in the sync's window once per reconcile_interval_hours (the schedule checks
    # hourly); with reconcile_fix the job fetches what is missing (else it only reports). Items
    # newer than reconcile_settle_minutes are left out: the sync may not have reached them yet.
    reconcile_interval_hours: int = field(default=24, metadata={"min": 1, "max": 720})
    reconcile_fix: bool = field(default=True, metadata={"choices": (True, False)})
    reconcile_settle_minutes: int = field(default=60, metadata={"min": 0, "max": 10_080})
    # Sync items (a message, a calendar) that fail permanently: recorded on their SyncState,
    # skipped, retried this often, and no more after this many failed attempts.
    sync_failed_retry_every_s: float = field(
        default=21_600.0, metadata={"min": 60, "max": 30 * DAY_S}
    )
    sync_failed_max_attempts: int = field(default=5, metadata={"min": 1, "max": 100})
    # Pending sweep (jobs/sync/sweep.py): raw events pending this long after their last write,
    # that no active sync or normalize job covers, get a normalize job; checked at this interval.
    pending_sweep_after_s: float = field(default=300.0, metadata={"min": 0, "max": 7 * DAY_S})
    pending_sweep_interval_minutes: int = field(default=5, metadata={"min": 1, "max": 1440})
    # Normalization
    normalize_chunk_size: int = field(default=500, metadata={"min": 1, "max": 10_000})
    # Chunk loops a normalize job runs side by side, each on its own database connection (one
    # parses while another's chunk is written); 1 = one loop on the job's connection.
    normalize_lanes: int = field(default=2, metadata={"min": 1, "max": 8})
    max_body_chars: int = field(default=100_000, metadata={"min": 1, "max": 10_000_000})
    # Google batch parts: first backoff before resending failed parts, and the longest
    # Retry-After waited in-process (longer ones go back to the job engine as a retry).
    google_batch_retry_base_s: float = field(default=1.0, metadata={"min": 0, "max": 60})
    google_retry_after_cap_s: float = field(default=30.0, metadata={"min": 0, "max": 3600})

    # Google's quotas for a Cloud project created after 2026-05-01, each held by the pacer
    # (jobs.google.pacer) over a sliding window: Gmail in quota units (messages.get = 5),
    # Calendar in requests; per user (one Google account) and per project (every account).
    gmail_quota_units_per_user_per_minute: int = field(
        default=6_000, metadata={"min": 100, "max": 1_000_000_000}
    )
    gmail_quota_units_per_project_per_minute: int = field(
        default=1_200_000, metadata={"min": 100, "max": 1_000_000_000}
    )
    calendar_requests_per_user_per_minute: int = field(
        default=600, metadata={"min": 1, "max": 1_000_000_000}
    )
    calendar_requests_per_project_per_minute: int = field(
        default=10_000, metadata={"min": 1, "max": 1_000_000_000}
    )
    # Background work (backfill, priority="background") spends at most this share of each
    # per-user limit, leaving the rest for incremental syncs.
    quota_background_share: float = field(default=0.5, metadata={"min": 0.05, "max": 1.0})
    # The sliding window the pacer counts over: Google's 60 s plus a margin for the time between
    # a reservation and Google counting the call (request latency, batch parts served later).
    # Tests shorten it to run in seconds.
    quota_window_s: float = field(default=62.0, metadata={"min": 1.0, "max": 3600.0})
    # Every limit also holds over this shorter window (0 = off) at 1.5x its even rate, so a
    # long sync's waits stay short (below google_retry_after_cap_s) instead of a burst of a
    # minute's quota followed by a wait of most of a minute.
    quota_burst_window_s: float = field(default=15.0, metadata={"min": 0.0, "max": 3600.0})
    # A sync, backfill, reconcile or push_renew job whose next call would wait longer than this
    # for its account's quota, while other jobs are due and waiting for a worker, stops there
    # (its place saved) and continues in a new job once the quota frees, instead of holding its
    # worker asleep: with more accounts than workers, the workers serve the accounts that have
    # quota. With no other job waiting it sleeps as before. Set it to google_retry_after_cap_s
    # or more to never yield.
    quota_yield_after_s: float = field(default=1.0, metadata={"min": 0.0, "max": 3600.0})

    # Push notifications (docs/OPERATIONS.md): off while push_gmail_topic and
    # push_calendar_address are empty, and then everything syncs by polling as before.
    # Gmail: the Cloud Pub/Sub topic users.watch publishes to ("projects/P/topics/T"), the label
    # ids a change must touch to be announced (empty: every change), and the push
    # subscription's OIDC token: its audience and the service account it signs as (both
    # required with a topic: anyone can get a Google-signed token for any audience, so the
    # account is what proves the push is Pub/Sub's) and where Google's keys are.
    push_gmail_topic: str = field(
        default="", metadata={"pattern": r"(projects/[^/\s]+/topics/[^/\s]+)?"}
    )
    push_gmail_label_ids: tuple[str, ...] = field(default=(), metadata={"pattern": r"\S+"})
    push_gmail_audience: str = field(default="", metadata={"pattern": r"(\S+)?"})
    push_gmail_service_account: str = field(default="", metadata={"pattern": r"([^@\s]+@\S+)?"})
    push_jwks_url: str = field(
        default="https://www.googleapis.com/oauth2/v3/certs", metadata={"pattern": r"https?://\S+"}
    )
    # Google's keys are cached as its Cache-Control says; a token signed with a key id the cache
    # does not know, or a fetch that failed, refetches them at most once per this many seconds.
    push_jwks_refetch_min_s: float = field(default=60.0, metadata={"min": 0, "max": DAY_S})
    # While Google's key endpoint fails, the keys last read stay usable this long past their
    # max-age (stale-if-error): an outage of the endpoint does not refuse valid pushes.
    push_jwks_stale_grace_s: float = field(default=6 * 3600.0, metadata={"min": 0, "max": DAY_S})
    # Calendar: the public HTTPS URL of /google/push/calendar/ (plain http only to a loopback
    # host, for the emulator), and how long a notification channel is asked to live.
    push_calendar_address: str = field(
        default="",
        metadata={
            "pattern": r"(https://\S+|http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(/\S*)?)?"
        },
    )
    push_calendar_channel_ttl_s: int = field(
        default=604_800, metadata={"min": 3600, "max": 30 * 86_400}
    )
    # Renewal (the push_renew schedule, every push_renew_interval_minutes): a Gmail watch is
    # renewed once it is this old (Google: a watch lasts 7 days, renew daily), and any watch
    # or channel whose expiry is this close.
    push_renew_interval_minutes: int = field(default=60, metadata={"min": 1, "max": 1440})
    push_gmail_rewatch_after_s: float = field(default=DAY_S, metadata={"min": 60, "max": 6 * DAY_S})
    push_renew_before_expiry_s: float = field(
        default=2 * DAY_S, metadata={"min": 60, "max": 6 * DAY_S}
    )
    # The safety net: an account whose push is healthy is polled this often (rounded up to the
    # periodic sync's interval) instead of every periodic_sync_minutes; push counts as failing
    # once a poll found a change that no notification announced for this long.
    push_poll_minutes: int = field(default=60, metadata={"min": 1, "max": 10_080})
    push_missed_grace_s: float = field(default=600.0, metadata={"min": 0, "max": 7 * DAY_S})

    # Health thresholds ---------------------------------------------------------------------
    # `manage.py pipeline_status` exits non-zero (and the pipeline page shows the reason) when
    # any is exceeded (jobs/status.py, health_problems):
    # a due job has waited longer than this for a worker (seconds),
    health_max_due_job_age_s: float = field(default=900.0, metadata={"min": 1, "max": 30 * DAY_S})
    # more than this share of the jobs finished over the window failed, counted only once at
    # least health_failure_rate_min_jobs finished (one failure of one job is not an outage),
    health_max_failure_rate: float = field(default=0.2, metadata={"min": 0.0, "max": 1.0})
    health_failure_rate_window_s: float = field(
        default=3600.0, metadata={"min": 60, "max": 7 * DAY_S}
    )
    health_failure_rate_min_jobs: int = field(default=20, metadata={"min": 1, "max": 1_000_000})
    # more Google accounts than this need their user to reconnect them,
    health_max_reauth_accounts: int = field(default=0, metadata={"min": 0, "max": 1_000_000})
    # more raw events than this have waited for normalization longer than pending_sweep_after_s
    # (the sweep should have picked them up).
    health_max_stale_pending_raw_events: int = field(
        default=0, metadata={"min": 0, "max": 1_000_000_000}
    )


# --- validation ---------------------------------------------------------------------------------

# JSON type names for messages: the configuration is written as JSON (the CRM_PIPELINE variable).
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    kind: type  # int, float, bool, str or tuple
    item: type | None  # the item type of a tuple
    optional: bool
    metadata: typing.Mapping[str, Any]


@cache
def _specs(cls: type = PipelineConfig) -> dict[str, _Spec]:
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in fields(cls):
        hint, optional = hints[f.name], False
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
            optional = True
            (hint,) = (a for a in args if a is not type(None))
        item = None
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            hint = tuple
        specs[f.name] = _Spec(f.name, hint, item, optional, f.metadata)
    return specs


def _expected(spec: _Spec) -> str:
    meta = spec.metadata
    if "expected" in meta:
        return str(meta["expected"])
    if spec.kind is tuple:
        what = f"a list of {_TYPE_NAMES.get(spec.item or str, 'values').split(' ', 1)[1]}s"
        if "choices" in meta:
            what += f", each one of {_choices(meta)}"
        elif "pattern" in meta:
            what += f", each matching the pattern {meta['pattern']}"
    elif "choices" in meta:
        what = f"one of {_choices(meta)}"
    else:
        what = _TYPE_NAMES.get(spec.kind, spec.kind.__name__)
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and hi is not None:
            what += f" between {_number(lo)} and {_number(hi)}"
        elif lo is not None:
            what += f" >= {_number(lo)}"
        elif hi is not None:
            what += f" <= {_number(hi)}"
        if "pattern" in meta:
            what += f" matching the pattern {meta['pattern']}"
    if spec.optional:
        what += " or null"
    return what


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _choices(meta: typing.Mapping[str, Any]) -> str:
    return ", ".join(json.dumps(c) for c in meta["choices"])


def _scalar(spec: _Spec, kind: type, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for one scalar against its type and metadata."""
    meta = spec.metadata
    if isinstance(value, bool) and kind is not bool:
        return False, None
    if kind is float:
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False, None
        value = float(value)
    elif kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            return False, None
    elif not isinstance(value, kind):
        return False, None
    if "min" in meta and value < meta["min"]:
        return False, None
    if "max" in meta and value > meta["max"]:
        return False, None
    if "choices" in meta:
        choices = meta["choices"]
        if meta.get("ignore_case") and isinstance(value, str):
            ok = value.casefold() in {str(c).casefold() for c in choices}
        else:
            ok = value in choices
        if not ok:
            return False, None
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value, flags=re.DOTALL):
        return False, None
    return True, value


def _convert(spec: _Spec, value: Any) -> tuple[bool, Any]:
    if value is None:
        return spec.optional, None
    if spec.kind is not tuple:
        return _scalar(spec, spec.kind, value)
    # A string is not a list of one item: tuple("SPAM") would be ('S', 'P', 'A', 'M').
    if not isinstance(value, list | tuple):
        return False, None
    items = []
    for item in value:
        ok, converted = _scalar(spec, spec.item or str, item)
        if not ok:
            return False, None
        items.append(converted)
    return True, tuple(items)


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def settings_values(
    cls: type,
    raw: Any,
    *,
    setting: str,
    example: str,
    unknown_hint: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Validate a settings dict against the dataclass `cls` (each field's type and metadata, as
    described in the module docstring): (valid values, problems), every problem naming the key
    of `setting`, the value and what is expected. `example` shows a valid object; an unknown
    key's message lists the keys unless `unknown_hint` says where to find them. Shared by every
    app's settings (jobs' CRM_PIPELINE, search's CRM_PIPELINE_SEARCH)."""
    expected_object = f"expected a JSON object of settings, such as {example}"
    if raw is None:
        return {}, []
    if isinstance(raw, str):
        # The standalone settings keep an unparsable environment variable as it came.
        try:
            json.loads(raw)
            detail = ""
        except ValueError as exc:
            detail = f" (not valid JSON: {exc})"
        return {}, [f"{setting}: got {raw!r}{detail}; {expected_object}"]
    if not isinstance(raw, dict):
        return {}, [f"{setting}: got {_show(raw)} ({type(raw).__name__}); {expected_object}"]
    specs = _specs(cls)
    hint = unknown_hint or "one of " + ", ".join(json.dumps(k) for k in sorted(specs))
    values: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        spec = specs.get(key)
        if spec is None:
            problems.append(
                f"{setting}[{key!r}]: unknown key (value {_show(value)}); expected {hint}"
            )
            continue
        ok, converted = _convert(spec, value)
        if ok:
            values[key] = converted
        else:
            problems.append(f"{setting}[{key!r}]: got {_show(value)}; expected {_expected(spec)}")
    return values, problems


C = typing.TypeVar("C")


class AppSettings(typing.Generic[C]):
    """An app's settings dict (`setting`, a name in django.conf.settings) read into a config:
    `fields` is the dataclass whose fields and metadata say what is valid (`settings_values`),
    `build(values, problems)` makes the app's config of the valid values (the field defaults
    where a value is bad), appending the problems only a whole config shows (keys that must
    agree). Without `build` the config is `fields(**values)`.

    `get()` caches the config until the setting changes (a test's `settings` fixture, say) and
    raises ImproperlyConfigured naming every problem; `check(...)` is the app's system check."""

    def __init__(
        self,
        setting: str,
        fields: type,
        *,
        example: str,
        check_id: str,
        build: typing.Callable[[dict[str, Any], list[str]], C] | None = None,
    ) -> None:
        self.setting = setting
        self.fields = fields
        self.example = example
        self.check_id = check_id
        self._build = build
        self._cached: C | None = None
        from django.core.signals import setting_changed

        setting_changed.connect(self._reset, weak=False)

    def parse(self, raw: Any) -> tuple[C, list[str]]:
        """(config, problems) for a raw value of the setting."""
        values, problems = settings_values(
            self.fields, raw, setting=self.setting, example=self.example
        )
        if self._build is None:
            return typing.cast(C, self.fields(**values)), problems
        return self._build(values, problems), problems

    def problems(self) -> list[str]:
        """Everything wrong with the setting, one line each (empty when valid)."""
        return self.parse(getattr(settings, self.setting, None))[1]

    def build(self, raw: Any) -> C:
        """The config of `raw`; ImproperlyConfigured names every problem."""
        config, problems = self.parse(raw)
        if problems:
            raise ImproperlyConfigured("; ".join(problems))
        return config

    def get(self) -> C:
        """The config of the setting, cached until it changes."""
        if self._cached is None:
            self._cached = self.build(getattr(settings, self.setting, None))
        return self._cached

    def cache_clear(self) -> None:
        self._cached = None

    def _reset(self, *, setting: str, **kwargs: Any) -> None:
        if setting == self.setting:
            self.cache_clear()

    def check(self, app_configs: Any = None, **kwargs: Any) -> list[Any]:
        """The system check: one error per problem, naming the key, the value and what is
        expected (`manage.py check`, runserver and qcluster refuse to start)."""
        from django.core import checks

        self.cache_clear()
        return [
            checks.Error(
                problem,
                hint=f"Fix settings.{self.setting} (the {self.setting} variable).",
                id=self.check_id,
            )
            for problem in self.problems()
        ]


def _parse(overrides: Any) -> tuple[dict[str, Any], list[str]]:
    """(valid values, problems): every problem names the key, the value and what is expected."""
    values, problems = settings_values(
        PipelineConfig,
        overrides,
        setting="CRM_PIPELINE",
        example='{"job_max_attempts": 3}',
        unknown_hint="one of the keys of jobs.config.PipelineConfig (see the README's "
        "configuration table)",
    )
    if not isinstance(overrides, dict):
        return values, problems
    config = PipelineConfig(**values)
    if config.backoff_cap_s < config.backoff_base_s:
        problems.append(
            f"CRM_PIPELINE['backoff_cap_s']: got {_number(config.backoff_cap_s)}; expected a "
            f"number >= backoff_base_s ({_number(config.backoff_base_s)})"
        )
    problems += _push_problems(config)
    return values, problems


def _push_problems(config: PipelineConfig) -> list[str]:
    """The push keys that only make sense together."""
    problems = []
    if config.push_gmail_topic and not config.push_gmail_audience:
        problems.append(
            f"CRM_PIPELINE['push_gmail_audience']: got \"\"; expected the audience of the Pub/Sub "
            f"push subscription's OIDC token when push_gmail_topic is set "
            f"({config.push_gmail_topic!r}); without it no push could be verified"
        )
    if config.push_gmail_topic and not config.push_gmail_service_account:
        problems.append(
            f"CRM_PIPELINE['push_gmail_service_account']: got \"\"; expected the service account "
            f"the Pub/Sub push subscription signs its OIDC token as when push_gmail_topic is set "
            f"({config.push_gmail_topic!r}); anyone can get a Google-signed token for any "
            "audience, so without it no push could be trusted"
        )
    if config.push_poll_minutes < config.periodic_sync_minutes:
        problems.append(
            f"CRM_PIPELINE['push_poll_minutes']: got {config.push_poll_minutes}; expected a "
            f"number >= periodic_sync_minutes ({config.periodic_sync_minutes}): it is the "
            "longer interval of accounts whose push is healthy"
        )
    return problems


def config_problems() -> list[str]:
    """Everything wrong with settings.CRM_PIPELINE, one line each (empty when it is valid)."""
    return _parse(getattr(settings, "CRM_PIPELINE", None))[1]


def get_config() -> PipelineConfig:
    """The config from settings.CRM_PIPELINE; ImproperlyConfigured when anything in it is bad."""
    values, problems = _parse(getattr(settings, "CRM_PIPELINE", None))
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    return PipelineConfig(**values)
