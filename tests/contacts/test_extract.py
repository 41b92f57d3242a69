"""Issue 9, extract_contacts: identities, exclusions, resolution, duplicates, fuzzy, counts."""

from __future__ import annotations

import pytest

from contacts.models import (
    Contact,
    ContactIdentity,
    InteractionDuplicate,
    InteractionParticipant,
    MergeSuggestion,
)
from contacts.selectors import batch_interaction_ids
from jobs.models import Interaction
from tests.contacts.factories import OWN, OWN_ALIAS, account_for, event, extract, gmail, ingest

pytestmark = pytest.mark.django_db


def contacts_by_email(user) -> dict[str, Contact]:
    return {c.primary_email: c for c in Contact.objects.filter(user=user)}


def test_batch_interaction_ids_are_the_batch_s_own(user):
    account_for(user)
    first = ingest(user, mails=[gmail(frm="Jane <jane@acme.example>", to=[OWN])])
    second = ingest(user, mails=[gmail(frm="Bob <bob@acme.example>", to=[OWN])])
    a = batch_interaction_ids(user_id=user.pk, batch_id=first)
    b = batch_interaction_ids(user_id=user.pk, batch_id=second)
    assert len(a) == len(b) == 1 and a != b
    assert set(a + b) == set(Interaction.objects.filter(user=user).values_list("id", flat=True))


def test_identity_rules_resolution_new_contact_named_from_the_most_frequent_name(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Jane Doe <jane.doe@acme.example>", to=[OWN]),
            gmail(frm="Jane Doe <jane.doe@acme.example>", to=[OWN]),
            gmail(frm="J. Doe <Jane.Doe@ACME.example>", to=[OWN]),
            gmail(frm=OWN, to=["sam.lee@acme.example", "J.Smith+crm@googlemail.com"]),
            gmail(frm="John Smith <jsmith@gmail.com>", to=[OWN]),
        ],
    )
    report = extract(user, batch)
    contacts = contacts_by_email(user)
    assert set(contacts) == {"jane.doe@acme.example", "sam.lee@acme.example", "jsmith@gmail.com"}
    jane = contacts["jane.doe@acme.example"]
    assert jane.display_name == "Jane Doe" and jane.company_domain == "acme.example"
    assert contacts["sam.lee@acme.example"].display_name == "Sam Lee"  # readable fallback
    smith = contacts["jsmith@gmail.com"]
    assert smith.company_domain == ""  # personal mail
    identity = ContactIdentity.objects.get(contact=smith)
    assert identity.value == "j.smith+crm@googlemail.com"  # as first seen (lowercased by Gmail)
    assert identity.names == {"John Smith": 1}
    assert ContactIdentity.objects.get(contact=jane).names == {"Jane Doe": 2, "J. Doe": 1}
    assert jane.created_from_id == min(batch_interaction_ids(user_id=user.pk, batch_id=batch))
    assert report.contacts_created == 3
    assert report.inserted == InteractionParticipant.objects.filter(user=user).count() == 6


def test_own_addresses_rooms_group_calendars_and_noreply_never_become_contacts(user):
    account_for(user)
    # a second account of the same user: its addresses are the user's own too
    account_for(user, email="ada.work@corp.example", aliases=())
    batch = ingest(
        user,
        mails=[
            gmail(frm="Shop <noreply@shop.example>", to=[OWN]),
            gmail(frm="GitHub <notifications@github.com>", to=[OWN_ALIAS]),
            gmail(frm="MAILER-DAEMON@mx.example", to=["ada.work@corp.example"]),
            gmail(frm="bounces+42@lists.example", to=[OWN]),
            gmail(frm="Real Person <real@people.example>", to=[OWN, "ada.work@corp.example"]),
        ],
        events=[
            event(
                attendees=[
                    {"email": OWN, "self": True, "responseStatus": "accepted"},
                    {"email": "room-1@resource.calendar.google.com", "resource": True},
                    {"email": "board-room@rooms.example", "resource": True},
                    {"email": "team_x@group.calendar.google.com"},
                    {"email": "abc@group.v.calendar.google.com"},
                    {"email": "guest@people.example", "responseStatus": "tentative"},
                ]
            )
        ],
    )
    report = extract(user, batch)
    assert set(contacts_by_email(user)) == {"real@people.example", "guest@people.example"}
    assert report.excluded == {
        "own_address": 8,  # 6 recipients + the organizer and the self attendee
        "automated": 4,
        "resource": 2,  # one by domain, one only marked resource in the raw payload
        "group_calendar": 2,
    }
    guest = InteractionParticipant.objects.get(contact__primary_email="guest@people.example")
    assert (guest.role, guest.response_status) == ("attendee", "tentative")
    assert report.seen == report.linked + sum(report.excluded.values())


def test_own_addresses_bulk_mail_only_when_the_user_wrote_back(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(
                frm="News <news@letters.example>",
                to=[OWN],
                headers={"List-Unsubscribe": "<mailto:u@letters.example>"},
            ),
            gmail(frm="Promo <deals@shop.example>", to=[OWN], headers={"Precedence": "bulk"}),
            gmail(
                frm="Carol <carol@club.example>",
                to=[OWN],
                headers={"List-Unsubscribe": "<https://club.example/u>"},
            ),
            gmail(frm=OWN, to=["carol@club.example"], labels=("SENT",)),  # the user wrote to Carol
        ],
    )
    report = extract(user, batch)
    assert set(contacts_by_email(user)) == {"carol@club.example"}
    assert report.excluded == {"bulk": 2, "own_address": 4}
    # Carol's list mail is linked too: she is someone the user writes to
    carol = InteractionParticipant.objects.filter(contact__primary_email="carol@club.example")
    assert carol.count() == 2


def test_identity_rules_gmail_variants_resolve_to_one_contact_across_batches(user):
    account_for(user)
    extract(user, ingest(user, mails=[gmail(frm="Jo <j.doe+crm@gmail.com>", to=[OWN])]))
    extract(user, ingest(user, mails=[gmail(frm="Jo Doe <jdoe@googlemail.com>", to=[OWN])]))
    extract(user, ingest(user, mails=[gmail(frm="Jo Doe <JDoe@gmail.com>", to=[OWN])]))
    contact = Contact.objects.get(user=user)
    assert contact.identities.count() == 1
    assert contact.participations.count() == 3
    # the name seen most often wins, also when it comes later
    assert contact.display_name == "Jo Doe"


def test_rerun_inserts_0(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[gmail(frm="A <a@x.example>", to=[OWN, "b@x.example"]) for _ in range(5)],
        events=[event(attendees=[{"email": "c@y.example", "responseStatus": "accepted"}])],
    )
    first = extract(user, batch)
    assert first.inserted == 11
    snapshot = list(InteractionParticipant.objects.order_by("id").values_list())
    again = extract(user, batch)
    assert (again.inserted, again.updated, again.removed, again.contacts_created) == (0, 0, 0, 0)
    assert again.suggestions_created == 0
    assert list(InteractionParticipant.objects.order_by("id").values_list()) == snapshot
    assert ContactIdentity.objects.get(key="a@x.example").names == {"A": 5}  # not counted twice


def test_a_changed_response_updates_the_participant_and_a_removed_attendee_goes(user):
    account_for(user)
    payload = event(
        attendees=[
            {"email": "c@y.example", "responseStatus": "needsAction"},
            {"email": "d@y.example", "responseStatus": "accepted"},
        ]
    )
    extract(user, ingest(user, events=[payload]))
    payload["attendees"] = [{"email": "c@y.example", "responseStatus": "declined"}]
    from jobs.models import RawEvent

    RawEvent.objects.filter(user=user).update(payload=payload, status="pending")
    batch = RawEvent.objects.get(user=user).batch_id
    from jobs.normalization.services import raw_events_normalize

    raw_events_normalize(user_id=user.pk, provider="calendar", batch_id=batch)
    report = extract(user, batch)
    assert (report.inserted, report.updated, report.removed) == (0, 1, 1)
    rows = InteractionParticipant.objects.filter(role="attendee").values_list(
        "identity__key", "response_status"
    )
    assert list(rows) == [("c@y.example", "declined")]


def test_same_message_id_from_takeout_and_api_one_set_of_participants(user):
    account_for(user)
    mail = dict(frm="Jane <jane@acme.example>", to=[OWN], message_id="<same@acme.example>")
    api = ingest(user, mails=[gmail(**mail, gmail_id="api-1")])
    takeout = ingest(user, mails=[gmail(**mail, gmail_id="takeout-1")])
    # the copy (later id) is extracted first: it is linked to the canonical all the same
    copy_report = extract(user, takeout)
    canonical_report = extract(user, api)
    api_id = Interaction.objects.get(source_id="api-1").pk
    takeout_id = Interaction.objects.get(source_id="takeout-1").pk
    assert api_id < takeout_id
    dup = InteractionDuplicate.objects.get()
    assert (dup.interaction_id, dup.canonical_id) == (takeout_id, api_id)
    assert copy_report.duplicates_linked == 1
    assert copy_report.excluded == {"duplicate_interaction": 2}
    assert canonical_report.inserted == 1
    participants = InteractionParticipant.objects.filter(user=user)
    assert list(participants.values_list("interaction_id", flat=True)) == [api_id]
    assert Interaction.objects.filter(user=user).count() == 2  # both rows kept
    # a re-run of either batch changes nothing
    assert extract(user, takeout).inserted == extract(user, api).inserted == 0
    assert InteractionDuplicate.objects.count() == 1


def test_same_message_id_list_copy_in_one_batch(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Jane <jane@acme.example>", to=[OWN], message_id="<x@acme.example>"),
            gmail(
                frm="Jane <jane@acme.example>",
                to=["team@lists.acme.example"],
                cc=[OWN],
                message_id="<x@acme.example>",
            ),
        ],
    )
    report = extract(user, batch)
    assert report.duplicates_linked == 1 and report.inserted == 1
    assert not Contact.objects.filter(primary_email="team@lists.acme.example").exists()


def test_a_fuzzy_pair_gets_a_suggestion_and_is_not_merged(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
            gmail(frm="Katherine Johnsen <katherine.johnson@nasa.example>", to=[OWN]),
            gmail(frm="Dorothy Vaughan <dvaughan@nasa.example>", to=[OWN]),
            gmail(frm="Mary Jackson <mary.j@gmail.com>", to=[OWN]),
            gmail(frm="Mary Jackson <mjackson@outlook.com>", to=[OWN]),
            gmail(frm="Mary Jackson <mary@other-corp.example>", to=[OWN]),
            gmail(frm="Ann Lee <ann@one.example>", to=[OWN]),
            gmail(frm="Ann Lee <ann@two.example>", to=[OWN]),  # two companies: no suggestion
        ],
    )
    report = extract(user, batch)
    contacts = contacts_by_email(user)
    assert len(contacts) == 8  # nothing merged automatically
    assert all(c.merged_into_id is None for c in contacts.values())
    pairs = {
        (
            frozenset({s.contact_a.primary_email, s.contact_b.primary_email}),
            s.reason,
        ): s.score
        for s in MergeSuggestion.objects.filter(user=user)
    }
    k = frozenset({"kjohnson@nasa.example", "katherine.johnson@nasa.example"})
    assert pairs[(k, "similar name at nasa.example")] >= 88
    mary = ["maryj@gmail.com", "mjackson@outlook.com", "mary@other-corp.example"]
    personal = "same name at a personal-mail domain"
    assert (frozenset(mary[:2]), personal) in pairs
    assert (frozenset([mary[0], mary[2]]), personal) in pairs
    assert (frozenset([mary[1], mary[2]]), personal) in pairs
    assert len(pairs) == 4 == report.suggestions_created
    assert all(s.status == "pending" for s in MergeSuggestion.objects.all())


def test_fuzzy_threshold_is_configurable(user, settings):
    settings.CRM_PIPELINE_CONTACTS = {"fuzzy_threshold": 99}
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
            gmail(frm="Katherine Johnsen <kj2@nasa.example>", to=[OWN]),
        ],
    )
    assert extract(user, batch).suggestions_created == 0


def _mails(n: int, *, name: str = "Person") -> list[dict]:
    """n mails with every case a chunk handles: new and known people, similar names at one
    company, personal domains, bulk mail, a Message-ID seen twice, the user's own addresses."""
    similar = [
        gmail(frm=f"{name} Katherine Johnson <kj1@nasa.example>", to=[OWN]),
        gmail(frm=f"{name} Katherine Johnsen <kj2@nasa.example>", to=[OWN]),
    ]
    return similar + [
        gmail(
            frm=f"{name} {i} <p{i}@c{i % 7}.example>",
            to=[OWN, f"q{i}@c{i % 5}.example"],
            cc=[f"Friend {i % 11} <r{i % 11}@gmail.com>"],
            headers={"List-Unsubscribe": "<mailto:x@y>"} if i % 9 == 0 else None,
            message_id=f"<dup-{name}-{i // 2}@x.example>" if i % 4 < 2 else None,
        )
        for i in range(n - 2)
    ]


def _statements(django_user_model, size: int) -> tuple[int, int, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from contacts.services.extract import contacts_extract_chunk, user_own_keys

    user = django_user_model.objects.create_user(f"u{size}", email=f"u{size}@example.com")
    account_for(user)
    own = user_own_keys(user_id=user.pk)
    counts = []
    for name in ("Person", "Persona"):  # the second batch renames every sender
        ids = batch_interaction_ids(
            user_id=user.pk, batch_id=ingest(user, mails=_mails(size, name=name))
        )
        with CaptureQueriesContext(connection) as queries:
            report = contacts_extract_chunk(user_id=user.pk, interaction_ids=ids, own=own)
        counts.append(len(queries))
        assert report.inserted > size and report.duplicates_linked > 0  # real work was done
        assert report.excluded["bulk"] > 0
        if name == "Person":
            assert report.suggestions_created > 0
    assert report.contacts_renamed > 0
    with CaptureQueriesContext(connection) as queries:
        again = contacts_extract_chunk(user_id=user.pk, interaction_ids=ids, own=own)
    assert again.inserted == 0
    return (*counts, len(queries), report.statements_per_chunk)


def test_statements_per_chunk_same_for_10_and_500(django_user_model):
    small = _statements(django_user_model, 10)
    large = _statements(django_user_model, 500)
    assert small == large, (small, large)
    assert small[0] <= 17  # a savepoint pair and at most 15 statements
