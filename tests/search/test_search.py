"""interaction_search: hybrid ranking, scores and snippets, filters, modes, the provider down,
and isolation between users (the stand-in's bag-of-words vectors make rankings predictable)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import InteractionDuplicate
from jobs.enqueue import enqueue
from jobs.models import Job
from jobs.runner import run_job
from search.models import EmbeddingSet
from search.selectors import SearchError, interaction_search
from tests.search.mail import NOW, in_batch, mail
from tests.timeline.people import person, take_part

pytestmark = pytest.mark.django_db


def embed_all(user, interactions) -> None:
    batch = in_batch(interactions)
    job = enqueue("embed", user=user, batch_id=batch, dedupe_key=f"embed:{uuid.uuid4()}")
    assert run_job(job.pk) == "succeeded"
    Job.objects.filter(kind="embed", status="queued").delete()  # the `all` pass: not needed


@pytest.fixture
def mailbox(user, stand_in):
    mails = {
        "invoice": mail(
            user,
            "Invoice INV-2001",
            "The payment for March is still outstanding, please settle the invoice.",
            at=NOW - timedelta(days=40),
        ),
        "lunch": mail(user, "Lunch on Friday", "Shall we have lunch on Friday at the harbour?"),
        "report": mail(
            user, "Quarterly report", "Revenue grew in the northern region this quarter."
        ),
        "shipping": mail(
            user, "Shipping delay", "The container is held at the port pending customs."
        ),
        "pricing": mail(
            user,
            "Pricing",
            "Our invoice template changed; pricing for the northern region is attached.",
            at=NOW - timedelta(days=2),
        ),
    }
    embed_all(user, mails.values())
    return mails


def ids(results) -> list[int]:
    return [hit.interaction_id for hit in results]


def test_hybrid_results_carry_both_scores_the_fused_score_and_a_snippet(user, mailbox):
    results = interaction_search(user=user, query="invoice outstanding payment", limit=3)

    assert results.mode == "hybrid" and results.model == "nomic-embed-text"
    best = results[0]
    assert best.interaction_id == mailbox["invoice"].pk
    assert best.vector_rank == 1 and best.text_rank == 1
    assert best.vector_score is not None and 0 < best.vector_score <= 1
    assert best.text_score is not None and best.text_score > 0
    assert best.fused_score == pytest.approx(2 / 61, abs=1e-6)  # rank 1 in both, k = 60
    assert "«outstanding»" in best.snippet and "«invoice»" in best.snippet
    assert len(set(ids(results))) == len(results) <= 3
    fused = [hit.fused_score for hit in results]
    assert fused == sorted(fused, reverse=True)


def test_one_result_per_interaction_even_with_many_matching_chunks(user, stand_in, search_config):
    search_config(openai_max_tokens=30)
    long = mail(user, "Harbour", " ".join(["harbour lunch plans"] * 40))
    other = mail(user, "Other", "harbour")
    embed_all(user, [long, other])
    results = interaction_search(user=user, query="harbour lunch", limit=10)
    assert sorted(ids(results)) == sorted([long.pk, other.pk])


def test_text_only_and_vector_only_modes(user, mailbox):
    text = interaction_search(user=user, query="customs", mode="text")
    assert ids(text) == [mailbox["shipping"].pk]
    assert text[0].vector_score is None and text[0].text_rank == 1

    vector = interaction_search(user=user, query="customs", mode="vector", limit=5)
    assert len(vector) == 5  # every interaction has a similarity
    assert vector[0].interaction_id == mailbox["shipping"].pk
    assert all(hit.text_score is None for hit in vector)


def test_text_only_matches_any_term_of_a_plain_query_more_terms_first(user, mailbox):
    # no mail has all three words: the lunch mail has two of them, the shipping mail one
    text = interaction_search(user=user, query="lunch harbour customs", mode="text", limit=5)
    assert ids(text) == [mailbox["lunch"].pk, mailbox["shipping"].pk]
    assert text[0].text_score > text[1].text_score
    assert "«customs»" in text[1].snippet


def test_text_only_counts_a_rare_term_above_a_common_one(user, stand_in):
    # the same text but for one word; the rare word's mail is the oldest, so it would come last
    # on a tie
    harbour = mail(user, "Note", "Please check the harbour before Friday.")
    invoices = [mail(user, "Note", "Please check the invoice before Friday.") for _ in range(4)]
    embed_all(user, [harbour, *invoices])
    text = interaction_search(user=user, query="invoice harbour", mode="text", limit=5)
    assert ids(text)[0] == harbour.pk
    assert sorted(ids(text)[1:]) == sorted(i.pk for i in invoices)
    assert text[0].text_score > text[1].text_score


def test_text_only_keeps_websearch_syntax_as_typed(user, mailbox):
    def found(query: str) -> set[int]:
        return set(ids(interaction_search(user=user, query=query, mode="text", limit=10)))

    # a quoted phrase: both words, together
    assert found('"northern region"') == {mailbox["report"].pk, mailbox["pricing"].pk}
    assert found('"region northern"') == set()
    # -word excludes, even next to plain words
    assert found("customs -container") == set()
    assert found("invoice -pricing") == {mailbox["invoice"].pk}
    # or, in any case
    assert found("customs OR lunch") == {mailbox["shipping"].pk, mailbox["lunch"].pk}


def test_hybrid_fuses_the_all_terms_text_ranking(user, mailbox):
    results = interaction_search(user=user, query="lunch harbour customs", limit=5)
    assert results and all(hit.text_rank is None for hit in results)
    both = interaction_search(user=user, query="lunch harbour", limit=5)
    assert both[0].interaction_id == mailbox["lunch"].pk and both[0].text_rank == 1


def test_with_the_provider_down_hybrid_text_matches_any_term(user, mailbox, stand_in):
    stand_in.fail_next(1, status=503)
    results = interaction_search(user=user, query="lunch harbour customs", limit=5)
    assert ids(results) == [mailbox["lunch"].pk, mailbox["shipping"].pk]
    assert any("could not be embedded" in note for note in results.notes)


def test_a_text_match_outranks_in_hybrid_what_only_the_vector_half_found(user, mailbox):
    # websearch syntax: a quoted phrase
    results = interaction_search(user=user, query='"northern region"', limit=5)
    top = set(ids(results)[:2])
    assert top == {mailbox["report"].pk, mailbox["pricing"].pk}


def test_the_contact_filter_keeps_the_contacts_interactions(user, mailbox):
    jane = person(user, "jane@acme.example", "Jane")
    take_part(mailbox["pricing"], jane)
    results = interaction_search(user=user, query="invoice", contact=jane)
    assert ids(results) == [mailbox["pricing"].pk]


def test_the_since_filter(user, mailbox):
    results = interaction_search(
        user=user, query="invoice", since=(NOW - timedelta(days=10)).date(), limit=10
    )
    assert mailbox["invoice"].pk not in ids(results)
    assert mailbox["pricing"].pk in ids(results)
    assert all(hit.occurred_at >= NOW - timedelta(days=11) for hit in results)


def test_an_interaction_linked_as_a_duplicate_is_not_returned(user, mailbox):
    copy = mail(user, "Invoice INV-2001", mailbox["invoice"].body_text)
    embed_all(user, [copy])
    InteractionDuplicate.objects.create(
        user=user, interaction=copy, canonical=mailbox["invoice"], reason="same Message-ID"
    )
    results = interaction_search(user=user, query="invoice INV-2001 outstanding", limit=10)
    assert copy.pk not in ids(results) and mailbox["invoice"].pk in ids(results)


def test_with_the_provider_down_hybrid_answers_from_text_and_says_so(user, mailbox, stand_in):
    stand_in.fail_next(1, status=503)
    results = interaction_search(user=user, query="customs")
    assert ids(results) == [mailbox["shipping"].pk]
    assert results[0].vector_score is None
    assert any("could not be embedded" in note for note in results.notes)
    stand_in.fail_next(1, status=503)
    with pytest.raises(SearchError, match="could not be embedded"):
        interaction_search(user=user, query="customs", mode="vector")


def test_an_empty_query_finds_nothing_and_bad_arguments_are_refused(user, mailbox):
    assert list(interaction_search(user=user, query="   ")) == []
    with pytest.raises(ValueError, match="limit"):
        interaction_search(user=user, query="x", limit=0)
    with pytest.raises(ValueError, match="mode"):
        interaction_search(user=user, query="x", mode="fuzzy")  # type: ignore[arg-type]


def test_a_date_since_means_midnight(user, mailbox):
    results = interaction_search(user=user, query="pricing", since=date(2099, 1, 1))
    assert list(results) == []


# --- isolation ---------------------------------------------------------------------------------

B_SUBJECTS = [
    "Merger talks with Globex - strictly confidential",
    "Salary review for the engineering team",
    "Invoice INV-2001",  # the same subject as one of A's
    "Board meeting minutes",
]


@pytest.fixture
def two_mailboxes(user, other_user, mailbox):
    theirs = [
        mail(other_user, subject, f"{subject}. Details for Bob only: payment, invoice, lunch.")
        for subject in B_SUBJECTS
    ]
    embed_all(other_user, theirs)
    return mailbox, theirs


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    query=st.one_of(
        st.sampled_from([*B_SUBJECTS, "Bob only", "Globex merger", "salary", "invoice", "lunch"]),
        st.text(
            alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs", "P")),
            min_size=1,
            max_size=40,
        ),
    ),
    mode=st.sampled_from(["hybrid", "vector", "text"]),
    limit=st.integers(min_value=1, max_value=100),
)
def test_user_as_search_never_returns_user_bs_interactions(
    user, other_user, two_mailboxes, query, mode, limit
):
    _, theirs = two_mailboxes
    results = interaction_search(user=user, query=query, mode=mode, limit=limit)
    assert not set(ids(results)) & {i.pk for i in theirs}
    back = interaction_search(user=other_user, query=query, mode=mode, limit=limit)
    assert set(ids(back)) <= {i.pk for i in theirs}


def test_with_no_usable_model_hybrid_answers_from_text(user, mailbox, search_config, tmp_path):
    # No complete set of another model to fall back on (the next test), no usable model.
    EmbeddingSet.objects.filter(user=user).update(status=EmbeddingSet.Status.BUILDING)
    search_config(provider="local", model_dir=str(tmp_path / "no-weights-here"))
    results = interaction_search(user=user, query="customs")
    assert ids(results) == [mailbox["shipping"].pk]
    assert any("could not be embedded" in note for note in results.notes)


def test_a_configured_model_without_weights_searches_the_complete_set_of_another(
    user, mailbox, search_config, tmp_path
):
    """Switched to a model whose weights are missing: the complete set of the model before is
    searched, its queries embedded by that model, as during any switch."""
    search_config(provider="local", model_dir=str(tmp_path / "no-weights-here"))
    results = interaction_search(user=user, query="customs", mode="vector")
    assert mailbox["shipping"].pk in ids(results)
    assert not any("could not be embedded" in note for note in results.notes)
