"""Google documents no length for page tokens, sync tokens or history ids: whatever a sync is
handed, its SyncState keeps, including the listing's parameters that carry the sync token."""

from __future__ import annotations

import json

import pytest

from jobs.models import GoogleAccount, Provider, SyncState

pytestmark = pytest.mark.django_db


def test_a_sync_state_keeps_long_tokens_and_the_listing_that_carries_them(user):
    account = GoogleAccount.objects.create(user=user, email="ada@gmail.example")
    token = "CPDAlvWDx70CEPDAlvWDx70CGAUgAQ" * 100  # 3,000 characters
    state = SyncState.objects.create(
        user=user,
        account=account,
        provider=Provider.CALENDAR,
        resource_id="team@group.calendar.google.com",
        cursor=token,
        page_token=token[::-1],
        pass_cursor=token.lower(),
        # a calendar listing's parameters: {"syncToken": <the cursor>} (jobs/sync/calendar.py)
        pass_query=json.dumps({"syncToken": token}),
    )
    state.refresh_from_db()
    assert state.cursor == token
    assert state.page_token == token[::-1]
    assert state.pass_cursor == token.lower()
    assert json.loads(state.pass_query) == {"syncToken": token}
