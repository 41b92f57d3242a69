"""Question detection on the text a sender wrote (quoted history and signature removed)."""

from __future__ import annotations

from insights.text import asked, new_text, questions

REPLY = """Hi Ada,

Could you send me the deck before Friday? Also, what time works for the call?
How are you? We signed the contract. Please confirm the invoice address.

Thanks,
Jane
--
Jane Doe | Acme | Is this a question?

On Mon, Jan 6, 2025 at 10:00 AM Ada <ada@example.com> wrote:
> Here is the agenda. Any questions?
> Best
"""


def test_the_reply_keeps_only_what_the_sender_wrote():
    text = new_text(REPLY)
    assert text.startswith("Hi Ada,")
    assert text.endswith("Thanks,\nJane")
    assert "agenda" not in text and "Acme" not in text


def test_questions_and_requests_are_found_small_talk_is_not():
    assert asked(REPLY) == [
        "Could you send me the deck before Friday?",
        "Also, what time works for the call?",
        "Please confirm the invoice address.",
    ]


def test_a_forward_and_quoted_lines_are_not_the_senders_questions():
    forward = (
        "FYI, see below.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nTo: Jane\n"
        "Subject: x\n\nDo you agree?\n"
    )
    assert asked(forward) == []
    assert asked("Noted.\n> Do you agree?\n") == []


def test_other_languages_by_their_question_mark():
    assert questions("¿Podrías enviarme la propuesta? Gracias.") == [
        "Podrías enviarme la propuesta?"
    ]
    assert questions("Czy możesz przesłać fakturę? Dzięki.") == ["Czy możesz przesłać fakturę?"]


def test_a_request_without_a_question_mark():
    assert questions("Let me know if Tuesday works") == ["Let me know if Tuesday works"]
    assert questions("Here is the report.") == []
