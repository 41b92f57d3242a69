"""What an interaction is searched by: the body without quotes, forwards and signatures, and
chunks within the model's token limit."""

from __future__ import annotations

import itertools

from search.text import chunk_document, clean_body, content_hash, document_text
from tests.search.mail import SAMPLE


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word, plus two special tokens."""
    return len(text.split()) + 2


def test_a_quoted_reply_and_the_signature_are_removed():
    body = clean_body(SAMPLE[0][1])
    assert (
        body
        == "Hi Ada,\n\nThe payment for March is still outstanding. Could you check with finance?"
    )


def test_a_dash_dash_signature_is_removed():
    assert clean_body(SAMPLE[1][1]) == "Are you free for lunch on Friday near the harbour?"


def test_forwarded_history_is_removed_and_the_note_above_it_kept():
    assert clean_body(SAMPLE[2][1]) == "Can you look at the renewal before Thursday?"


def test_a_forward_without_a_note_keeps_the_forwarded_text():
    body = (
        "---------- Forwarded message ---------\nFrom: Dan <dan@vendor.example>\n"
        "Date: Mon, Mar 3, 2025\nSubject: Terms\nTo: bob@acme.example\n\n"
        "The renewal terms are attached.\n"
    )
    assert clean_body(body) == "The renewal terms are attached."


def test_outlook_original_message_and_a_spanish_sign_off_are_removed():
    outlook = (
        "Thanks, will do.\n\n-----Original Message-----\nFrom: Eve\nSent: Monday\n"
        "To: Frank\nSubject: hi\n\nolder text\n"
    )
    assert clean_body(outlook) == "Thanks, will do."
    spanish = (
        "Hola Sofía,\n\nTe envío la propuesta.\n\nSaludos,\nMiguel\n\n"
        "El lun, 3 mar 2025 a las 10:00, Ana <ana@x.example> escribió:\n> texto viejo\n"
    )
    assert clean_body(spanish) == "Hola Sofía,\n\nTe envío la propuesta."


def test_a_plain_body_is_kept_and_an_empty_one_stays_empty():
    assert clean_body("Just one line.\nAnd another.") == "Just one line.\nAnd another."
    assert clean_body("") == "" and clean_body("  \n ") == ""


def test_a_text_that_fits_is_one_chunk_with_the_subject():
    chunks = chunk_document(
        subject="Hello",
        body="short body",
        count_tokens=words,
        max_tokens=50,
        overlap_tokens=4,
        max_chunks=8,
    )
    assert [c.text for c in chunks] == ["Hello\n\nshort body"]
    assert chunks[0].content_hash == content_hash("Hello\n\nshort body")
    assert chunks[0].text == document_text(subject="Hello", body="short body")


def test_a_long_body_is_cut_into_overlapping_chunks_within_the_limit():
    body = " ".join(f"w{n}" for n in range(100))
    chunks = chunk_document(
        subject="Subject line",
        body=body,
        count_tokens=words,
        max_tokens=20,
        overlap_tokens=5,
        max_chunks=50,
    )
    assert len(chunks) > 5
    assert all(words(c.text) <= 20 for c in chunks)
    assert all(c.text.startswith("Subject line\n\n") for c in chunks)
    seen = [c.text.split("\n\n", 1)[1].split() for c in chunks]
    # every word is in some chunk, in order; consecutive chunks share a few words
    assert [w for w in dict.fromkeys(w for part in seen for w in part)] == body.split()
    for before, after in itertools.pairwise(seen):
        shared = set(before) & set(after)
        assert 1 <= len(shared) <= 3
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunks_stop_at_max_chunks_and_a_giant_word_is_cut():
    body = " ".join(f"w{n}" for n in range(1000))
    assert (
        len(
            chunk_document(
                subject="S",
                body=body,
                count_tokens=words,
                max_tokens=20,
                overlap_tokens=2,
                max_chunks=4,
            )
        )
        == 4
    )

    def chars(text: str) -> int:
        return len(text) // 4 + 2

    blob = "x" * 4000
    chunks = chunk_document(
        subject="",
        body=f"see {blob} end",
        count_tokens=chars,
        max_tokens=100,
        overlap_tokens=0,
        max_chunks=100,
    )
    assert all(chars(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks).count("x") == 4000


def test_no_text_no_chunk():
    assert (
        chunk_document(
            subject="", body="", count_tokens=words, max_tokens=10, overlap_tokens=0, max_chunks=3
        )
        == []
    )
