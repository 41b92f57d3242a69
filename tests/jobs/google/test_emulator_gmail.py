"""Gmail v1 through the real google-api-python-client: profile, list, get, labels, history."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from googleapiclient.errors import HttpError

from google_emulator.generator import GeneratedMailbox, make_message
from google_emulator.server import GoogleEmulator

OWNER = "alex.morgan@pipeline.example"  # the conftest's generated mailbox owner
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def list_all(gmail, **kwargs) -> list[dict]:
    messages, token = [], None
    while True:
        page = gmail.users().messages().list(userId="me", pageToken=token, **kwargs).execute()
        messages += page.get("messages", [])
        token = page.get("nextPageToken")
        if not token:
            return messages


def visible(generated: GeneratedMailbox) -> list:
    return [m for m in generated.messages if not {"SPAM", "TRASH"} & set(m.label_ids)]


def test_profile_reports_the_owner_and_mailbox_totals(gmail, emulator, generated_mailbox):
    assert generated_mailbox.owner_email == OWNER
    profile = gmail.users().getProfile(userId="me").execute()

    assert profile["emailAddress"] == OWNER
    assert profile["messagesTotal"] == 300
    assert 0 < profile["threadsTotal"] < 300
    assert int(profile["historyId"]) == emulator.mailbox().history_id


def test_list_pages_newest_first_through_every_visible_message(gmail, emulator, generated_mailbox):
    first = gmail.users().messages().list(userId="me", maxResults=40).execute()
    messages = list_all(gmail, maxResults=40)

    assert len(first["messages"]) == 40 and "nextPageToken" in first
    assert first["resultSizeEstimate"] == len(visible(generated_mailbox))
    assert len(messages) == len({m["id"] for m in messages}) == len(visible(generated_mailbox))
    dates = [emulator.mailbox().get(m["id"]).internal_date_ms for m in messages]
    assert dates == sorted(dates, reverse=True)


def test_max_results_defaults_to_100_and_is_capped_at_500(gmail):
    assert len(gmail.users().messages().list(userId="me").execute()["messages"]) == 100
    assert (
        len(gmail.users().messages().list(userId="me", maxResults=1000).execute()["messages"]) > 100
    )


def test_spam_and_trash_are_listed_only_when_asked_for(gmail, generated_mailbox):
    spam = [m for m in generated_mailbox.messages if "SPAM" in m.label_ids]

    everything = list_all(gmail, includeSpamTrash=True, maxResults=500)
    in_spam = list_all(gmail, q="in:spam")
    by_label = list_all(gmail, labelIds=["SPAM"])

    assert len(everything) == 300
    assert len(in_spam) == len(by_label) == len(spam) > 0


def test_query_after_and_before_take_epoch_seconds_or_dates(gmail, generated_mailbox):
    cutoff = datetime(2025, 2, 15, tzinfo=UTC)
    pacific_midnight = int(datetime.fromisoformat("2025-02-15T00:00:00-08:00").timestamp())
    expected_after = [
        m for m in visible(generated_mailbox) if m.internal_date_ms >= cutoff.timestamp() * 1000
    ]
    expected_before_date = [
        m for m in visible(generated_mailbox) if m.internal_date_ms < pacific_midnight * 1000
    ]

    after = list_all(gmail, q=f"after:{int(cutoff.timestamp())}")
    before = list_all(gmail, q="before:2025/02/15")
    window = list_all(gmail, q=f"after:{int(cutoff.timestamp())} before:2025/02/15")

    assert len(after) == len(expected_after) > 0
    assert len(before) == len(expected_before_date) > 0
    # Gmail reads a date as midnight Pacific, eight hours after midnight UTC.
    assert {m["id"] for m in window} == {m["id"] for m in after} & {m["id"] for m in before}
    assert 0 < len(window) < len(after)


def test_in_and_minus_in_split_the_mailbox_by_label(gmail, generated_mailbox):
    inbox = list_all(gmail, q="in:inbox")
    not_inbox = list_all(gmail, q="-in:inbox")
    clients = list_all(gmail, q="label:clients in:inbox")
    both = list_all(gmail, labelIds=["INBOX", "Label_1"])

    expected_inbox = [m for m in visible(generated_mailbox) if "INBOX" in m.label_ids]
    assert len(inbox) == len(expected_inbox)
    assert len(inbox) + len(not_inbox) == len(visible(generated_mailbox))
    assert {m["id"] for m in clients} == {m["id"] for m in both} != set()


def test_header_and_free_text_search_decode_encoded_words(gmail, emulator):
    emulator.mailbox().add_message(
        make_message(
            from_="José Quiñonero <jq@citricos.example>", to=OWNER, subject="Cotización café"
        ).raw
    )

    by_sender = list_all(gmail, q="from:quiñonero")
    by_subject = list_all(gmail, q='subject:"cotización café"')

    assert len(by_sender) == 1 and by_sender == by_subject


@pytest.mark.parametrize("query", ["has:attachment", "a OR b", "(a b)", "larger:10M"])
def test_search_operators_the_emulator_cannot_evaluate_are_refused(gmail, query):
    with pytest.raises(HttpError) as error:
        gmail.users().messages().list(userId="me", q=query).execute()

    assert error.value.status_code == 400


def test_get_answers_in_all_four_formats_and_raw_is_the_original_bytes(gmail, emulator):
    message_id = list_all(gmail, maxResults=500)[7]["id"]
    stored = emulator.mailbox().get(message_id)
    get = gmail.users().messages().get

    full = get(userId="me", id=message_id).execute()
    metadata = get(userId="me", id=message_id, format="metadata").execute()
    minimal = get(userId="me", id=message_id, format="minimal").execute()
    raw = get(userId="me", id=message_id, format="raw").execute()

    assert full["id"] == message_id and full["payload"]["headers"]
    assert full["labelIds"] == stored.label_ids and full["internalDate"] == str(
        stored.internal_date_ms
    )
    assert "body" not in metadata["payload"] or metadata["payload"]["body"] == {"size": 0}
    assert "payload" not in minimal and minimal["threadId"] == full["threadId"]
    assert base64.urlsafe_b64decode(raw["raw"] + "==") == stored.raw


def test_metadata_headers_pick_the_headers_returned(gmail):
    message_id = list_all(gmail, maxResults=500)[0]["id"]

    message = (
        gmail.users()
        .messages()
        .get(userId="me", id=message_id, format="metadata", metadataHeaders=["From", "Subject"])
        .execute()
    )

    assert {h["name"].lower() for h in message["payload"]["headers"]} == {"from", "subject"}


def test_an_unknown_message_is_404_and_a_malformed_id_is_400(gmail):
    with pytest.raises(HttpError) as missing:
        gmail.users().messages().get(userId="me", id="ffffffffffffffff").execute()
    with pytest.raises(HttpError) as malformed:
        gmail.users().messages().get(userId="me", id="not-an-id").execute()

    assert missing.value.status_code == 404
    assert missing.value.error_details[0]["reason"] == "notFound"
    assert malformed.value.status_code == 400


def test_labels_and_send_as_aliases_are_listed(gmail, generated_mailbox):
    labels = {
        label["id"]: label for label in gmail.users().labels().list(userId="me").execute()["labels"]
    }
    send_as = gmail.users().settings().sendAs().list(userId="me").execute()["sendAs"]

    assert labels["INBOX"]["type"] == "system"
    assert labels["Label_1"] == {**labels["Label_1"], "name": "Clients", "type": "user"}
    assert [entry["sendAsEmail"] for entry in send_as] == [OWNER, *generated_mailbox.aliases]
    assert send_as[0]["isPrimary"] is True


def test_user_labels_are_searched_by_their_gmail_query_name(gmail, emulator):
    mailbox = emulator.mailbox()
    label_id = mailbox.add_label("Follow up/Urgent")
    message_id = mailbox.add_message(
        make_message(from_="a@x.example", to=OWNER, subject="Ping").raw
    )
    mailbox.modify_labels(message_id, add=[label_id])

    found = list_all(gmail, q="label:follow-up-urgent")

    assert [m["id"] for m in found] == [message_id]


def test_replies_join_their_thread(gmail, emulator, generated_mailbox):
    first = make_message(from_="Ana <ana@globex.example>", to=OWNER, subject="Kickoff", date=NOW)
    reply = make_message(
        from_=f"Alex <{OWNER}>",
        to="ana@globex.example",
        subject="Re: Kickoff",
        in_reply_to=first.message_id,
        labels=["SENT"],
    )
    mailbox = emulator.mailbox()

    first_id = mailbox.add_message(first.raw, label_ids=first.label_ids)
    reply_id = mailbox.add_message(reply.raw, label_ids=reply.label_ids)

    got = gmail.users().messages().get(userId="me", id=reply_id, format="minimal").execute()
    assert got["threadId"] == first_id
    assert got["labelIds"] == ["SENT"]


def test_history_shows_exactly_the_added_message_and_its_label_changes(gmail, emulator):
    mailbox = emulator.mailbox()
    start = gmail.users().getProfile(userId="me").execute()["historyId"]
    new = make_message(from_="Zoë <zoe@sgl.example>", to=OWNER, subject="Devis")

    message_id = mailbox.add_message(new.raw, label_ids=["INBOX", "UNREAD"])
    mailbox.modify_labels(message_id, add=["STARRED"], remove=["UNREAD"])
    history = gmail.users().history().list(userId="me", startHistoryId=start).execute()

    records = history["history"]
    assert [list(r.keys() - {"id", "messages"}) for r in records] == [
        ["messagesAdded"],
        ["labelsAdded"],
        ["labelsRemoved"],
    ]
    assert records[0]["messagesAdded"][0]["message"]["labelIds"] == ["INBOX", "UNREAD"]
    assert records[1]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert records[2]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert {r["messages"][0]["id"] for r in records} == {message_id}
    assert history["historyId"] == str(mailbox.history_id) == records[-1]["id"]
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids) and ids[0] > int(start)


def test_history_filters_by_type_and_label_and_pages(gmail, emulator):
    mailbox = emulator.mailbox()
    start = mailbox.history_id
    added = [
        mailbox.add_message(make_message(from_="a@x.example", to=OWNER, subject=f"n{i}").raw)
        for i in range(5)
    ]
    mailbox.modify_labels(added[0], add=["Label_1"])
    mailbox.delete_message(added[1])
    history = gmail.users().history()

    only_added = history.list(
        userId="me", startHistoryId=start, historyTypes="messageAdded"
    ).execute()
    labelled = history.list(userId="me", startHistoryId=start, labelId="Label_1").execute()
    deleted = history.list(
        userId="me", startHistoryId=start, historyTypes=["messageDeleted"]
    ).execute()
    first_page = history.list(userId="me", startHistoryId=start, maxResults=2).execute()
    second_page = history.list(
        userId="me", startHistoryId=start, maxResults=2, pageToken=first_page["nextPageToken"]
    ).execute()

    assert [r["messagesAdded"][0]["message"]["id"] for r in only_added["history"]] == added
    assert [list(r) for r in labelled["history"]] == [["id", "messages", "labelsAdded"]]
    assert deleted["history"][0]["messagesDeleted"][0]["message"]["id"] == added[1]
    assert [r["id"] for r in first_page["history"] + second_page["history"]] == [
        r["id"] for r in only_added["history"][:4]
    ]


def test_history_from_before_the_retained_window_is_404(gmail, emulator):
    mailbox = emulator.mailbox()
    start = mailbox.history_id
    mailbox.add_message(make_message(from_="a@x.example", to=OWNER, subject="late").raw)

    mailbox.expire_history(mailbox.history_id)

    with pytest.raises(HttpError) as error:
        gmail.users().history().list(userId="me", startHistoryId=start).execute()
    assert error.value.status_code == 404
    fresh = gmail.users().history().list(userId="me", startHistoryId=mailbox.history_id).execute()
    assert "history" not in fresh


def test_an_mbox_from_takeout_loads_with_its_labels_and_threads(tmp_path: Path):
    first = make_message(from_="Ana <ana@globex.example>", to=OWNER, subject="Hola", date=NOW)
    reply = make_message(
        from_=f"Alex <{OWNER}>",
        to="ana@globex.example",
        subject="Re: Hola",
        in_reply_to=first.message_id,
    )
    mbox = tmp_path / "All mail.mbox"
    mbox.write_bytes(
        b"From 1789@xxx Sat Mar 01 12:00:00 +0000 2025\n"
        b"X-GM-THRID: 1789\nX-Gmail-Labels: Inbox,Unread,Clients\n"
        + first.raw.replace(b"\r\n", b"\n")
        + b"\nFrom 1790@xxx Sat Mar 01 13:00:00 +0000 2025\n"
        b"X-GM-THRID: 1789\nX-Gmail-Labels: Sent\n" + reply.raw.replace(b"\r\n", b"\n")
    )
    emulator = GoogleEmulator()
    mailbox = emulator.add_mailbox(OWNER)

    assert mailbox.load_mbox(mbox) == 2

    newest, oldest = mailbox.newest_first()
    assert oldest.label_ids == ["INBOX", "UNREAD", "Label_Clients"]
    assert newest.label_ids == ["SENT"]
    assert newest.thread_id == oldest.thread_id == format(1789, "x")
    assert mailbox.labels()["Label_Clients"] == "Clients"


def test_a_token_reaches_its_own_mailbox_by_address_and_no_other(gmail, emulator):
    # Item 23: this test used to read another served mailbox through userId with a made-up
    # token (the loophole); a token now only ever acts for its own account.
    assert gmail.users().getProfile(userId=OWNER).execute()["emailAddress"] == OWNER
    for other in ("sam@pipeline.example", "nobody@pipeline.example"):
        with pytest.raises(HttpError) as error:
            gmail.users().getProfile(userId=other).execute()
        assert error.value.status_code == 403
