"""Issue 12, item 7: user A never sees or changes user B's rows, through any selector, service,
admin page, admin action or management command that takes a user.

The tests ENUMERATE what there is (introspection) and compare it with the registries below: a
new public function with a user parameter in a `selectors`/`services` module of the project
apps, a new ModelAdmin, admin action or management command with a user argument that has no
isolation check here makes `test_every_*_has_an_isolation_check` fail, naming it. To add one,
add an entry to FUNCTION_CHECKS / ADMIN_CHECKS / COMMAND_CHECKS (a few lines each).

Every check runs as user A (ada) against the world of tests/isolation_world.py (both users
with a row in every user-owned table), passing B's ids wherever the function takes ids, and
then asserts: B's rows are exactly as before (every column of every user-owned table), the
result holds no row of B and no text of B (B's tag), no row of one user points at another
user's row, and, where the check says so, A's own data is there (not vacuous). Each check runs
in a savepoint rolled back after it, so they do not see each other's writes.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from contacts.services.merge import MergeError
from insights.conf import get_config as insights_config
from insights.llm import LLMOutcome
from insights.rules.base import Candidate
from insights.services import InsightsReport
from search.embedding import get_provider
from search.models import EmbeddingSet, SearchDocument
from search.selectors import ContactNotFound as SearchContactNotFound
from search.selectors import provider_settings
from search.services import ChunkingRules, SearchDocumentText
from tests.isolation_world import (
    PROJECT_APPS,
    STAND_IN_DIMS,
    STAND_IN_MODEL,
    Side,
    World,
    build_world,
    configure,
    cross_user_references,
    fingerprint,
    leaks,
    snapshot,
    snapshot_diff,
)
from timeline.selectors import ContactNotFound as TimelineContactNotFound

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(settings, openai_server) -> World:
    configure(settings, openai_server)
    return build_world()


# == enumeration ==============================================================================


def user_functions() -> dict[str, Callable[..., Any]]:
    """Every public function defined in a selectors/services module (or package) of the
    project apps, subpackages included, that has a parameter naming a user."""
    found: dict[str, Callable[..., Any]] = {}
    for app in PROJECT_APPS:
        for path in sorted((REPO / app).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if not {"selectors", "services"} & set(parts) or "migrations" in parts:
                continue
            name = ".".join(parts).removesuffix(".__init__")
            module = importlib.import_module(name)
            for attr, fn in inspect.getmembers(module, inspect.isfunction):
                if attr.startswith("_") or fn.__module__ != module.__name__:
                    continue
                if any("user" in p for p in inspect.signature(fn).parameters):
                    found[f"{name}.{attr}"] = fn
    return found


def project_admins() -> dict[str, admin.ModelAdmin]:
    return {
        model._meta.label_lower: model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
    }


def _parser_dests(parser: argparse.ArgumentParser) -> list[str]:
    dests = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                dests += _parser_dests(sub)
        else:
            dests.append(action.dest)
    return dests


def user_commands() -> list[str]:
    """Management commands of the project apps with an argument naming a user."""
    found = []
    for name, app in sorted(get_commands().items()):
        if app not in PROJECT_APPS:
            continue
        parser = load_command_class(app, name).create_parser("manage.py", name)
        if any("user" in dest for dest in _parser_dests(parser)):
            found.append(name)
    return found


def superuser_actions(rf, django_user_model) -> dict[str, list[str]]:
    root = django_user_model(username="root-probe", is_staff=True, is_superuser=True)
    request = rf.get("/")
    request.user = root
    return {
        label: sorted(model_admin.get_actions(request))
        for label, model_admin in project_admins().items()
    }


# == the registry of function checks ==========================================================


@dataclass(frozen=True)
class Case:
    """How to call one function as user A against B's rows: `call(fn, world)` returns the
    result; `raises` are the refusals that count as isolation (B's id not found); `own` says
    what of A's the result must hold (a check that sees nothing proves nothing)."""

    call: Callable[[Callable[..., Any], World], Any] | list[Callable[..., Any]]
    raises: tuple[type[BaseException], ...] = ()
    own: Callable[[Any, World], bool] | None = None


def _noop() -> None:
    return None


def _has_own_text(result: Any, w: World) -> bool:
    return bool(leaks(result, viewer=w.b.user, other=w.a))


def _rules() -> ChunkingRules:
    return ChunkingRules()


def _b_documents(w: World) -> list[SearchDocumentText]:
    return [
        SearchDocumentText(d.interaction_id, d.subject, d.body, d.content_hash)
        for d in SearchDocument.objects.filter(user=w.b.user)
    ]


def _both(calls: Callable[[World], list[Any]]) -> list[Callable[[Callable[..., Any], World], Any]]:
    """Each call of `calls` as a variant of its own (checked in a savepoint of its own: a
    second call must not undo what the first did wrong)."""
    return [lambda fn, w, n=n: calls(w)[n](fn) for n in range(2)]


def _moves(w: World) -> list[Callable[[Callable[..., Any]], Any]]:
    """A merge hook's move, both ways: B's contact's rows to A's contact, and A's contact's
    rows to B's contact (either would join the two users)."""
    a, b = w.a.jane.pk, w.b.jane.pk
    return [
        lambda fn: fn(user_id=w.a.user.pk, source_id=b, target_id=a),
        lambda fn: fn(user_id=w.a.user.pk, source_id=a, target_id=b),
    ]


def _restores(ids_of: Callable[[World], tuple[list[int], list[int]]]):
    def calls(w: World) -> list[Callable[[Callable[..., Any]], Any]]:
        a, b = w.a.jane.pk, w.b.jane.pk
        a_ids, b_ids = ids_of(w)
        return [
            lambda fn: fn(user_id=w.a.user.pk, source_id=b, target_id=a, ids=a_ids + b_ids),
            lambda fn: fn(user_id=w.a.user.pk, source_id=a, target_id=b, ids=a_ids + b_ids),
        ]

    return calls


def _timeline_ids(w: World) -> tuple[list[int], list[int]]:
    return w.a.timeline_events, w.b.timeline_events


def _insight_ids(w: World) -> tuple[list[int], list[int]]:
    return w.a.insights, w.b.insights


def _candidate(w: World) -> Candidate:
    return Candidate(
        kind="relationship_strength",
        fingerprint="isolation-probe",
        contact_id=w.b.jane.pk,
        title="probe",
        summary="probe",
        evidence={},
        score=1.0,
        expires_at=w.now.replace(year=w.now.year + 1),
    )


FUNCTION_CHECKS: dict[str, Case] = {
    # -- contacts ---------------------------------------------------------------------------
    "contacts.selectors.batch_interaction_ids": Case(
        lambda fn, w: (
            fn(user_id=w.a.user.pk, batch_id=w.b.batch)
            + fn(user_id=w.a.user.pk, batch_id=w.a.batch)
        ),
        own=lambda r, w: set(w.a.interactions) <= set(r) and not set(r) & set(w.b.interactions),
    ),
    "contacts.selectors.contact_list": Case(
        lambda fn, w: list(fn(user=w.a.user)) + list(fn(user=w.a.user, query="jane")),
        own=_has_own_text,
    ),
    "contacts.services.extract.contacts_extract": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions),
        own=lambda r, w: r.interactions == len(w.a.interactions),
    ),
    "contacts.services.extract.contacts_extract_chunk": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            interaction_ids=w.b.interactions + w.a.interactions,
            own=frozenset({"bobtag@example.com"}),
        ),
    ),
    "contacts.services.extract.user_own_keys": Case(
        lambda fn, w: fn(user_id=w.a.user.pk), own=_has_own_text
    ),
    "contacts.services.merge.contact_merge": Case(
        lambda fn, w: fn(user=w.a.user, source=w.b.jane, target=w.a.jane), raises=(MergeError,)
    ),
    "contacts.services.merge.contact_unmerge": Case(
        lambda fn, w: fn(merge=w.b.merge, user=w.a.user), raises=(MergeError,)
    ),
    "contacts.services.merge.merge_suggestion_accept": Case(
        lambda fn, w: fn(user=w.a.user, suggestion=w.b.suggestion), raises=(MergeError,)
    ),
    "contacts.services.merge.merge_suggestion_reject": Case(
        lambda fn, w: fn(user=w.a.user, suggestion=w.b.suggestion), raises=(MergeError,)
    ),
    "contacts.services.merge.refresh_rollups": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, contact_ids=w.b.contacts + w.a.contacts)
    ),
    # -- insights ---------------------------------------------------------------------------
    "insights.selectors.awaiting_reply_threads": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, max_age_days=60), own=_has_own_text
    ),
    "insights.selectors.contact_facts": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, contact_ids=w.b.contacts + w.a.contacts, now=w.now),
        own=lambda r, w: {f.id for f in r} <= set(w.a.contacts) and bool(r),
    ),
    "insights.selectors.digest_facts": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, config=insights_config())
    ),
    "insights.selectors.insight_list": Case(
        lambda fn, w: list(fn(user=w.a.user)), own=lambda r, w: len(r) == len(w.a.insights)
    ),
    "insights.selectors.insights_llm_pending": Case(
        lambda fn, w: list(
            fn(
                user_id=w.a.user.pk,
                kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
                after_id=0,
            )
        )
    ),
    "insights.selectors.insights_summary": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "insights.selectors.interaction_texts": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions, limit=50
        ),
        own=_has_own_text,
    ),
    "insights.selectors.upcoming_meetings": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, config=insights_config())
    ),
    "insights.services.insight_llm_record": Case(
        lambda fn, w: [
            fn(
                user_id=w.a.user.pk,
                insight_id=pk,
                basis_hash=basis,
                outcome=LLMOutcome(summary="probe", open_questions=[]),
            )
            for pk, basis in __import__("insights.models")
            .models.Insight.objects.filter(pk__in=w.b.insights)
            .values_list("pk", "basis_hash")
        ],
        own=lambda r, w: r and not any(r),
    ),
    "insights.services.insight_set_status": Case(
        lambda fn, w: fn(
            user=w.a.user, insight_ids=w.b.insights + w.a.insights, status="dismissed"
        ),
        own=lambda r, w: r == len(w.a.insights),
    ),
    "insights.services.insights_contacts_chunk": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            contact_ids=w.b.contacts + w.a.contacts,
            now=w.now,
            config=insights_config(),
            report=InsightsReport(),
        )
    ),
    "insights.services.insights_expire": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now.replace(year=w.now.year + 5)),
        own=lambda r, w: r == len(w.a.insights),
    ),
    "insights.services.insights_generate": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, now=w.now, contact_ids=w.b.contacts + w.a.contacts),
            fn(user_id=w.a.user.pk, now=w.now),
        ]
    ),
    "insights.services.insights_move": Case(_both(_moves)),
    "insights.services.insights_resolve": Case(
        lambda fn, w: (
            fn(
                user_id=w.a.user.pk,
                kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
                keep=set(),
                contact_ids=w.b.contacts + w.a.contacts,
            )
            + fn(
                user_id=w.a.user.pk,
                kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
                keep=set(),
            )
        ),
        own=lambda r, w: r >= 1,
    ),
    "insights.services.insights_restore": Case(_both(_restores(_insight_ids))),
    "insights.services.insights_store": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            candidates=[_candidate(w)],
            config=insights_config(),
            report=InsightsReport(),
        )
    ),
    # -- jobs (normalization) ---------------------------------------------------------------
    "jobs.normalization.selectors.account_addresses": Case(
        lambda fn, w: fn(user_id=w.a.user.pk), own=_has_own_text
    ),
    "jobs.normalization.selectors.normalization_summary": Case(
        lambda fn, w: fn(user_id=w.a.user.pk)
    ),
    "jobs.normalization.selectors.raw_events_pending_exist": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk),
        ],
        own=lambda r, w: r == [False, False],
    ),
    "jobs.normalization.services.raw_events_normalize": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk),
            fn(user_id=w.a.user.pk, provider="gmail"),
        ]
    ),
    "jobs.normalization.services.raw_events_normalize_chunk": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch, chunk_size=50),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk, chunk_size=50),
            fn(
                user_id=w.a.user.pk,
                provider="gmail",
                chunk_size=50,
                addresses={w.b.account.pk: frozenset({"bobtag@example.com"})},
            ),
        ]
    ),
    "jobs.normalization.services.raw_events_reset": Case(
        lambda fn, w: (
            fn(user_id=w.a.user.pk, providers=["gmail"], ids=w.b.raw_events + w.a.raw_events)
            + fn(user_id=w.a.user.pk, providers=["gmail", "calendar"])
        ),
        own=lambda r, w: r >= len(w.a.raw_events) - 1,
    ),
    # -- search -----------------------------------------------------------------------------
    "search.selectors.contact_find": Case(
        lambda fn, w: fn(user=w.a.user, identifier=str(w.b.jane.pk)),
        raises=(SearchContactNotFound,),
    ),
    "search.selectors.embedding_set_missing": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, model=STAND_IN_MODEL, dims=STAND_IN_DIMS)
    ),
    "search.selectors.embedding_status": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.selectors.interaction_search": Case(
        lambda fn, w: [
            list(fn(user=w.a.user, query=f"{tag} invoice roadmap", mode=mode, limit=50))
            for tag in ("bobtag", "adatag")
            for mode in ("hybrid", "vector", "text")
        ],
        own=_has_own_text,
    ),
    "search.selectors.search_space": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.selectors.vector_search_is_exact": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, model=STAND_IN_MODEL, dims=STAND_IN_DIMS, limit=10)
    ),
    "search.services.documents_embed": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            documents=_b_documents(w),
            provider=get_provider(),
            provider_settings=provider_settings(),
            rules=_rules(),
            fence=_noop,
        )
    ),
    "search.services.embedding_set_complete": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            model=STAND_IN_MODEL,
            dims=STAND_IN_DIMS,
            provider_settings=provider_settings(),
            fence=_noop,
        )
    ),
    "search.services.embeddings_of_other_models_delete": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, model="another-model", dims=8, fence=_noop),
        own=lambda r, w: r[0] == len(w.a.interactions),
    ),
    "search.services.embeddings_rebuild_enqueue": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.services.search_documents_write": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            interaction_ids=w.b.interactions + w.a.interactions,
            rules=_rules(),
            fence=_noop,
        ),
        own=_has_own_text,
    ),
    # -- timeline ---------------------------------------------------------------------------
    "timeline.selectors.contact_timeline": Case(
        lambda fn, w: fn(user=w.a.user, contact=w.b.jane.pk),
        raises=(TimelineContactNotFound,),
    ),
    "timeline.selectors.timeline_contact_find": Case(
        lambda fn, w: fn(user=w.a.user, identifier=str(w.b.jane.pk)),
        raises=(TimelineContactNotFound,),
    ),
    "timeline.selectors.timeline_summary": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "timeline.services.timeline_events_move": Case(_both(_moves)),
    "timeline.services.timeline_events_restore": Case(_both(_restores(_timeline_ids))),
    "timeline.services.timeline_events_write": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions)
    ),
}


def _holds(own: Callable[[Any, World], bool], result: Any, w: World) -> bool:
    try:
        return bool(own(result, w))
    except Exception:
        return False


def run_isolated(w: World, label: str, call: Callable[[], Any], *, raises=(), own=None):
    """Run `call` in a savepoint rolled back after it; the isolation problems found."""
    problems: list[str] = []
    before = fingerprint(w.b.user)
    after = None
    savepoint = transaction.savepoint()
    try:
        try:
            result = call()
        except raises as exc:
            result = str(exc)
        except Exception as exc:
            return [f"{label}: raised {type(exc).__name__}: {exc}"]
        if fingerprint(w.b.user) != before:
            after = snapshot(w.b.user)
        problems += [
            f"{label}: returned B's {leak}" for leak in leaks(result, viewer=w.a.user, other=w.b)
        ]
        problems += [f"{label}: cross-user reference {r}" for r in cross_user_references()]
        if own is not None and not _holds(own, result, w):
            problems.append(f"{label}: A's own data not in the result {result!r:.300}")
    finally:
        transaction.savepoint_rollback(savepoint)
    if after is not None:  # what changed: the rows as they were (rolled back) against after
        changes = snapshot_diff(snapshot(w.b.user), after) or ["(rows the snapshot omits)"]
        problems += [f"{label}: B's rows changed: {c}" for c in changes]
    return problems


# == the tests: functions =====================================================================


def test_every_selector_and_service_taking_a_user_has_an_isolation_check():
    found = user_functions()
    missing = sorted(set(found) - set(FUNCTION_CHECKS))
    assert not missing, (
        "selectors/services that take a user but have no isolation check in "
        f"tests/test_isolation_enumerated.py FUNCTION_CHECKS: {missing}"
    )
    stale = sorted(set(FUNCTION_CHECKS) - set(found))
    assert not stale, f"FUNCTION_CHECKS names functions that no longer exist: {stale}"
    print(f'FIGURES: {{"functions_checked": {len(found)}}}')


def test_no_selector_or_service_lets_a_user_reach_another_users_rows(world):
    problems: list[str] = []
    functions = user_functions()
    for name, case in sorted(FUNCTION_CHECKS.items()):
        fn = functions[name]
        variants = case.call if isinstance(case.call, list) else [case.call]
        for n, call in enumerate(variants):
            problems += run_isolated(
                world,
                name if len(variants) == 1 else f"{name} (variant {n + 1})",
                lambda fn=fn, call=call: call(fn, world),
                raises=case.raises,
                own=case.own,
            )
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(world):
    """The harness sees a leak, a change of B's rows and a cross-user reference."""
    from contacts.models import Contact

    leak = run_isolated(world, "leak", lambda: list(Contact.objects.filter(user=world.b.user)))
    assert any("returned B's contacts.Contact" in p for p in leak), leak
    write = run_isolated(
        world,
        "write",
        lambda: Contact.objects.filter(pk=world.b.jane.pk).update(display_name="x"),
    )
    assert any("B's rows changed: contacts.Contact" in p for p in write), write
    join = run_isolated(
        world,
        "join",
        lambda: (
            __import__("timeline.models")
            .models.TimelineEvent.objects.filter(pk__in=world.a.timeline_events)
            .update(contact_id=world.b.jane.pk)
        ),
    )
    assert any("cross-user reference timeline.TimelineEvent.contact" in p for p in join), join
    vacuous = run_isolated(world, "vacuous", lambda: [], own=_has_own_text)
    assert any("A's own data not in the result" in p for p in vacuous), vacuous


# == admin ====================================================================================

# The rows of one user each admin is probed with (None: the admin has no object pages).
ADMIN_CHECKS: dict[str, Callable[[Side], list[int] | None]] = {
    "jobs.job": lambda s: [s.failed_job.pk, s.queued_job.pk],
    "jobs.rawevent": lambda s: [s.raw_events[0], s.pending_raw.pk],
    "jobs.interaction": lambda s: s.interactions[:2],
    "jobs.googleaccount": lambda s: [s.account.pk],
    "jobs.syncstate": lambda s: [s.sync_state.pk],
    "jobs.pushchannel": lambda s: [s.push_channel.pk],
    "jobs.reconcilerun": lambda s: [s.reconcile_run.pk],
    "contacts.contact": lambda s: [s.jane.pk, *s.contacts[:3]],
    "contacts.mergesuggestion": lambda s: [s.suggestion.pk],
    "contacts.contactmerge": lambda s: [s.merge.pk],
    "timeline.timelineevent": lambda s: s.timeline_events[:2],
    "search.interactionsearch": lambda s: None,
    "search.embeddingset": lambda s: list(
        EmbeddingSet.objects.filter(user=s.user).values_list("pk", flat=True)
    ),
    "insights.insight": lambda s: s.insights,
}


# Actions with a form of their own: besides B's ids alone, posted with these ids and fields
# (A's rows mixed with B's, B's row as the target).
ACTION_FORMS: dict[tuple[str, str], Callable[[World], tuple[list[int], dict[str, str]]]] = {
    ("contacts.contact", "merge_into"): lambda w: (
        [w.a.jane.pk, w.a.contacts[-1], w.b.jane.pk],
        {"confirm": "yes", "target": str(w.b.jane.pk)},
    ),
}


def grant(user, *verbs: str) -> None:
    """These permissions (view, change, delete) on every model of the project apps."""
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=PROJECT_APPS,
            codename__regex=rf"^({'|'.join(verbs)})_",
        )
    )


def _url(label: str, view: str, *args: Any) -> str | None:
    app, model = label.split(".")
    try:
        return reverse(f"admin:{app}_{model}_{view}", args=args)
    except NoReverseMatch:
        return None


def _page_problems(label: str, response, w: World) -> list[str]:
    html = response.content.decode(errors="replace").lower()
    problems = []
    if w.b.tag in html:
        at = html.index(w.b.tag)
        problems.append(f"{label}: B's text on the page: ...{html[max(0, at - 80) : at + 40]}...")
    context = getattr(response, "context", None)
    cl = context.get("cl") if context is not None else None
    if cl is not None:
        problems += [
            f"{label}: listed {leak}"
            for leak in leaks(list(cl.result_list), viewer=w.a.user, other=w.b)
        ]
    return problems


def test_every_admin_and_action_has_an_isolation_check(rf, django_user_model):
    admins = project_admins()
    missing = sorted(set(admins) - set(ADMIN_CHECKS))
    assert not missing, (
        "ModelAdmins of the project apps with no isolation check in "
        f"tests/test_isolation_enumerated.py ADMIN_CHECKS: {missing}"
    )
    stale = sorted(set(ADMIN_CHECKS) - set(admins))
    assert not stale, f"ADMIN_CHECKS names admins no longer registered: {stale}"
    actions = superuser_actions(rf, django_user_model)
    # every action is probed by the tests below (all of get_actions), so none can be missed;
    # this figure is what they cover
    print(
        "FIGURES: "
        + str(
            {
                "admins": len(admins),
                "actions": sum(len(a) for a in actions.values()),
                "by_admin": {k: v for k, v in actions.items() if v},
            }
        ).replace("'", '"')
    )
    assert sum(len(a) for a in actions.values()) >= 13


def test_a_staff_member_sees_and_changes_only_their_own_rows_in_every_admin(
    world, client, rf, django_user_model
):
    """A (staff, every view/change/delete permission of the project apps, not a superuser):
    every changelist shows only A's rows, every page of B's object is not there, and every
    action of every admin (as a superuser has them), posted with B's ids, changes nothing of
    B's."""
    grant(world.a.user, "view", "change", "delete")
    client.force_login(world.a.user)
    actions = superuser_actions(rf, django_user_model)
    problems: list[str] = []
    b_rows = snapshot(world.b.user)
    b_hash = fingerprint(world.b.user)

    def b_changes(what: str) -> list[str]:
        nonlocal b_rows, b_hash
        if fingerprint(world.b.user) == b_hash:
            return []
        now = snapshot(world.b.user)
        changes = [f"{what} changed B's rows: {c}" for c in snapshot_diff(b_rows, now)]
        b_rows, b_hash = now, fingerprint(world.b.user)
        return changes or [f"{what} changed B's rows"]

    for label, ids_of in sorted(ADMIN_CHECKS.items()):
        changelist = _url(label, "changelist")
        response = client.get(changelist)
        if response.status_code != 200:
            problems.append(f"{label}: changelist answered {response.status_code}")
        problems += _page_problems(f"{label} changelist", response, world)
        own_ids, b_ids = ids_of(world.a), ids_of(world.b)
        if b_ids is None:
            continue
        shown = {row.pk for row in response.context["cl"].result_list}
        if not set(own_ids) & shown:
            problems.append(f"{label}: A's own rows {own_ids} are not listed (a vacuous check)")
        for pk in b_ids[:1]:
            for view in ("change", "history", "delete"):
                url = _url(label, view, pk)
                if url is None:
                    continue
                page = client.get(url, follow=True)
                if page.status_code == 200 and not page.redirect_chain:
                    problems.append(f"{label}: A opened B's {view} page of #{pk}")
                problems += _page_problems(f"{label} {view} #{pk}", page, world)
        for pk in b_ids:
            url = _url(label, "delete", pk)
            if url is not None:
                client.post(url, {"post": "yes"})
            url = _url(label, "change", pk)
            if url is not None:
                client.post(url, {})
        for action in actions[label]:
            client.post(changelist, {"action": action, "_selected_action": b_ids, "post": "yes"})
            if (label, action) in ACTION_FORMS:
                ids, fields = ACTION_FORMS[label, action](world)
                client.post(changelist, {"action": action, "_selected_action": ids, **fields})
        problems += b_changes(f"{label}: an action or a POST")
    # the job page's own buttons
    for verb in ("retry", "requeue", "cancel"):
        for pk in ADMIN_CHECKS["jobs.job"](world.b):
            response = client.post(reverse("admin:jobs_job_act", args=[pk, verb]))
            if response.status_code != 404:
                problems.append(f"jobs.job {verb} button on B's job #{pk}: {response.status_code}")
    problems += b_changes("the job buttons")
    # the search page: B is not a user A can pick, and A's search shows nothing of B's
    page = client.get(
        reverse("admin:search_interactionsearch_changelist"),
        {"user": world.b.user.pk, "query": "invoice roadmap", "mode": "hybrid", "limit": 10},
    )
    problems += _page_problems("search page as B", page, world)
    if page.context["searched"]:
        problems.append("search page: A searched B's interactions")
    page = client.get(
        reverse("admin:search_interactionsearch_changelist"),
        {"user": world.a.user.pk, "query": "adatag invoice roadmap", "mode": "hybrid", "limit": 50},
    )
    problems += _page_problems("search page as A", page, world)
    if not page.context["searched"] or "adatag" not in page.content.decode().lower():
        problems.append("search page: A's own search found nothing of A's (a vacuous check)")
    problems += [f"cross-user reference {r}" for r in cross_user_references()]
    assert not problems, "\n".join(problems)


def test_staff_without_the_change_permission_get_no_action_and_change_nothing(
    world, client, rf, django_user_model
):
    """A with only the view permissions: no admin action of any admin is offered, posting
    each one (and the job buttons) on A's own rows is refused, and A's rows stay as they
    were."""
    grant(world.a.user, "view")
    client.force_login(world.a.user)
    request = rf.get("/")
    request.user = world.a.user
    actions = superuser_actions(rf, django_user_model)
    problems: list[str] = []
    before = snapshot(world.a.user)
    checked = 0
    for label, model_admin in sorted(project_admins().items()):
        offered = sorted(model_admin.get_actions(request))
        if offered:
            problems.append(f"{label}: actions {offered} offered without the change permission")
        own_ids = ADMIN_CHECKS[label](world.a)
        for action in actions[label]:
            checked += 1
            response = client.post(
                _url(label, "changelist"),
                {"action": action, "_selected_action": own_ids, "post": "yes"},
                follow=True,
            )
            if response.status_code not in (200, 403):
                problems.append(f"{label}.{action}: answered {response.status_code}")
    for verb in ("retry", "requeue", "cancel"):
        for pk in ADMIN_CHECKS["jobs.job"](world.a):
            response = client.post(reverse("admin:jobs_job_act", args=[pk, verb]))
            if response.status_code != 403:
                problems.append(f"job {verb} button without permission: {response.status_code}")
    response = client.post(reverse("admin:jobs_job_pipeline_retry_group"), {"kind": "record"})
    if response.status_code != 403:
        problems.append(f"pipeline retry-group without permission: {response.status_code}")
    problems += [
        f"an action without the permission changed A's rows: {c}"
        for c in snapshot_diff(before, snapshot(world.a.user))
    ]
    assert checked >= 13
    assert not problems, "\n".join(problems)


def test_the_actions_work_with_the_change_permission(world, client, rf):
    """The refusal above is the permission's doing: with it, an action does change A's rows."""
    grant(world.a.user, "view", "change")
    client.force_login(world.a.user)
    before = snapshot(world.a.user)
    client.post(
        reverse("admin:insights_insight_changelist"),
        {"action": "dismiss", "_selected_action": world.a.insights},
    )
    client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "retry_jobs", "_selected_action": [world.a.failed_job.pk]},
    )
    changed = snapshot_diff(before, snapshot(world.a.user))
    assert any(c.startswith("insights.Insight") for c in changed), changed
    assert any(c.startswith(f"jobs.Job #{world.a.failed_job.pk}") for c in changed), changed


# == management commands ======================================================================

MBOX = """From adatag@example.com Mon Mar  3 10:00:00 2025
From: Jane Adatag <jane@acme.example>
To: adatag@example.com
Subject: adatag imported
Message-ID: <imported-1@mail.example>
Date: Mon, 3 Mar 2025 10:00:00 +0000

adatag imported body
"""

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//isolation//EN
BEGIN:VEVENT
UID:isolation-1@example.com
DTSTART:20250303T100000Z
DTEND:20250303T110000Z
SUMMARY:adatag imported meeting
ORGANIZER:mailto:adatag@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:jane@acme.example
END:VEVENT
END:VCALENDAR
"""

# Each command's runs as A: argv (after the command name), built from the world and a folder
# for files; B's ids and addresses wherever an argument takes one. `own`: a text of A's the
# output must show (None: the command prints no user data).
COMMAND_CHECKS: dict[str, Callable[[World, Path], list[tuple[list[str], str | None]]]] = {
    "contacts": lambda w, d: [
        (["ada"], "adatag"),
        (["ada", "--search", "jane", "--json"], "adatag"),
        (["ada", "--search", "acme.example"], "adatag"),
    ],
    "embeddings": lambda w, d: [(["status", "ada"], None), (["rebuild", "ada"], None)],
    "enqueue_sync": lambda w, d: [
        (["ada", "--account", "bobtag@example.com"], None),
        (["ada"], None),
    ],
    "import_ics": lambda w, d: [
        (["ada", str(d / "a.ics"), "--address", "adatag@example.com"], None)
    ],
    "import_mbox": lambda w, d: [
        (["ada", str(d / "a.mbox"), "--address", "adatag@example.com"], None)
    ],
    "insights": lambda w, d: [(["ada", "--json", "--status", "all"], "adatag")],
    # Only B's account: ada's own would reach for Google (the job runs in the command).
    "reconcile": lambda w, d: [
        (["ada", "--account", "bobtag@example.com"], None),
        (["ada", "--account", "bobtag@example.com", "--fix", "--json"], None),
    ],
    "renormalize": lambda w, d: [(["ada"], None), (["ada", "--failed-only"], None)],
    "search": lambda w, d: [
        (["ada", "adatag invoice roadmap", "--limit", "50"], "adatag"),
        (["ada", "invoice", "--contact", str(w.b.jane.pk)], None),
        (["ada", "invoice", "--json"], "adatag"),
    ],
    "timeline": lambda w, d: [
        (["ada", "jane@acme.example", "--json"], "adatag"),
        (["ada", str(w.b.jane.pk)], None),
    ],
}


def test_every_command_taking_a_user_has_an_isolation_check():
    commands = user_commands()
    missing = sorted(set(commands) - set(COMMAND_CHECKS))
    assert not missing, (
        "management commands taking a user with no isolation check in "
        f"tests/test_isolation_enumerated.py COMMAND_CHECKS: {missing}"
    )
    stale = sorted(set(COMMAND_CHECKS) - set(commands))
    assert not stale, f"COMMAND_CHECKS names commands that no longer take a user: {stale}"
    print(f'FIGURES: {{"commands_checked": {len(commands)}}}')


def test_no_command_run_for_a_user_shows_or_changes_another_users_rows(world, tmp_path):
    (tmp_path / "a.mbox").write_text(MBOX)
    (tmp_path / "a.ics").write_text(ICS)
    problems: list[str] = []
    for name, runs in sorted(COMMAND_CHECKS.items()):
        for argv, own in runs(world, tmp_path):
            label = f"manage.py {name} {' '.join(argv)}"
            out, err = io.StringIO(), io.StringIO()

            def run(name=name, argv=argv, out=out, err=err) -> str:
                try:
                    call_command(name, *argv, stdout=out, stderr=err)
                except CommandError as exc:
                    err.write(f"CommandError: {exc}")
                output = out.getvalue() + err.getvalue()
                for arg in argv:  # B's address asked for, echoed back, is no leak
                    if world.b.tag in arg:
                        output = output.replace(arg, "<argument>")
                return output

            problems += run_isolated(
                world,
                label,
                run,
                own=(lambda r, w, own=own: own in r.lower()) if own else None,
            )
    assert not problems, "\n".join(problems)
