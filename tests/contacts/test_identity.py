"""Issue 9, identity rules: matching keys, names, exclusions (pure functions) and the config."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from contacts.conf import build_config, get_config
from contacts.identity import (
    EXCLUDED_AUTOMATED,
    EXCLUDED_GROUP_CALENDAR,
    EXCLUDED_OWN,
    EXCLUDED_RESOURCE,
    choose_display_name,
    clean_name,
    company_domain,
    exclusion_reason,
    matching_key,
    own_keys,
    readable_name,
)


def test_identity_rules_case_is_folded():
    assert matching_key("Jane.Doe@Example.COM") == "jane.doe@example.com"
    assert matching_key(" <jane@example.com> ") == "jane@example.com"


def test_identity_rules_idn_domain_is_one_key_in_either_form():
    assert matching_key("anna@Bücher.example") == "anna@xn--bcher-kva.example"
    assert matching_key("anna@xn--bcher-kva.example") == "anna@xn--bcher-kva.example"
    assert matching_key("anna@BÜCHER.example") == matching_key("anna@bücher.example")


def test_identity_rules_gmail_dots_and_plus_tags_fold():
    assert matching_key("j.doe+crm@gmail.com") == "jdoe@gmail.com"
    assert matching_key("jdoe@googlemail.com") == "jdoe@gmail.com"
    assert matching_key("J.D.O.E@GMail.com") == "jdoe@gmail.com"


def test_identity_rules_no_folding_for_other_domains():
    assert matching_key("j.doe+crm@example.com") == "j.doe+crm@example.com"
    assert matching_key("j.doe@outlook.com") != matching_key("jdoe@outlook.com")


def test_identity_rules_not_an_address():
    for value in ("", "jane", "@example.com", "jane@", "ja ne@example.com", None):
        assert matching_key(value) is None  # type: ignore[arg-type]


def test_identity_rules_readable_fallback_names():
    assert readable_name("jane.doe@example.com") == "Jane Doe"
    assert readable_name("JOHN_SMITH+crm@example.com") == "John Smith"
    assert readable_name("mary-ann.o@example.com") == "Mary Ann O"
    assert readable_name("jdoe@example.com") == "Jdoe"


def test_identity_rules_display_name_choice_is_the_most_frequent():
    assert choose_display_name({"Jane": 1, "Jane Doe": 3, "J. Doe": 2}, "X") == "Jane Doe"
    # ties: the longer, then alphabetical; none seen: the fallback
    assert choose_display_name({"Jane": 2, "Jane Doe": 2}, "X") == "Jane Doe"
    assert choose_display_name({"Bea": 1, "Ann": 1}, "X") == "Ann"
    assert choose_display_name({}, "Jane Doe") == "Jane Doe"
    assert clean_name("  'Jane   Doe' ") == "Jane Doe"
    assert clean_name("jane@example.com", "jane@example.com") == ""


def test_identity_rules_company_domain_not_for_personal_mail():
    personal = get_config().personal_domains
    assert company_domain("jane@acme.example", personal) == "acme.example"
    assert company_domain("jdoe@gmail.com", personal) == ""
    assert company_domain("x@outlook.com", personal) == ""


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("me@example.com", EXCLUDED_OWN),
        ("m.e+x@googlemail.com", EXCLUDED_OWN),  # an alias, matched by key
        ("Room-1@resource.calendar.google.com", EXCLUDED_RESOURCE),
        ("team_abc@group.calendar.google.com", EXCLUDED_GROUP_CALENDAR),
        ("xyz@group.v.calendar.google.com", EXCLUDED_GROUP_CALENDAR),
        ("noreply@shop.example", EXCLUDED_AUTOMATED),
        ("no-reply@accounts.google.com", EXCLUDED_AUTOMATED),
        ("donotreply@bank.example", EXCLUDED_AUTOMATED),
        ("do-not-reply@bank.example", EXCLUDED_AUTOMATED),
        ("notifications@github.com", EXCLUDED_AUTOMATED),
        ("MAILER-DAEMON@mx.example", EXCLUDED_AUTOMATED),
        ("postmaster@mx.example", EXCLUDED_AUTOMATED),
        ("bounces+123@mail.example", EXCLUDED_AUTOMATED),
        ("bounce-abc@mail.example", EXCLUDED_AUTOMATED),
        ("jane@example.com", None),
        ("notification.team.lead@example.com", None),
    ],
)
def test_own_addresses_rooms_group_calendars_and_noreply_never_contacts_rules(address, rule):
    key = matching_key(address)
    own = own_keys(["ME@example.com", "me@gmail.com"])
    assert exclusion_reason(key, own_keys=own, patterns=get_config().automated_patterns) == rule


def test_identity_rules_resource_and_self_flags_from_the_provider():
    patterns = get_config().automated_patterns
    assert exclusion_reason("r@x.example", own_keys=frozenset(), patterns=patterns, resource=True)
    assert exclusion_reason("s@x.example", own_keys=frozenset(), patterns=patterns, own=True)


def test_identity_rules_config_defaults_and_validation(settings):
    config = build_config({})
    assert config.chunk_size == 500 and config.fuzzy_threshold == 88.0
    settings.CRM_PIPELINE_CONTACTS = {
        "fuzzy_threshold": 75,
        "personal_domains": ["Mail.example"],
        "extra_automated_patterns": [r"^robot@"],
    }
    config = get_config()
    assert config.fuzzy_threshold == 75.0
    assert config.personal_domains == frozenset({"mail.example"})
    assert any(p.search("robot@x.example") for p in config.automated_patterns)
    assert any(p.search("noreply@x.example") for p in config.automated_patterns)
    for bad, word in [
        ({"fuzzy_threshold": 120}, "['fuzzy_threshold']: got 120; expected a number between"),
        ({"chunk_size": "big"}, "['chunk_size']: got \"big\"; expected an integer"),
        ({"automated_patterns": ["("]}, 'got "(" (not a regular expression'),
        ({"personal_domain": []}, "['personal_domain']: unknown key (value [])"),
        ([], "got [] (list); expected a JSON object"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=re.escape(word)):
            build_config(bad)


def test_identity_rules_a_bad_config_is_reported_at_start_up(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.CRM_PIPELINE_CONTACTS = {"fuzzy_threshold": 5}
    with pytest.raises(SystemCheckError, match=r"contacts.E001.*fuzzy_threshold"):
        call_command("check")
    settings.CRM_PIPELINE_CONTACTS = {}
    call_command("check")
