"""Contacts: the people a user deals with, their identities, participations, merges, rollups."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Contact(models.Model):
    """One person (or organisation address) a user has interacted with.

    Rollup fields are derived by `update_rollups` from the contact's participations in canonical
    interactions; a merged contact keeps its row (`merged_into` set) so a merge can be undone.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    display_name = models.CharField(max_length=255, blank=True)
    # The matching key of the contact's main e-mail identity (lowercased, IDNA domain).
    primary_email = models.CharField(max_length=320, blank=True)
    # Domain of a company address; empty for personal-mail domains (gmail.com, outlook.com ...).
    company_domain = models.CharField(max_length=255, blank=True)
    created_from = models.ForeignKey(
        "jobs.Interaction", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="merged_contacts"
    )
    # Rollups (update_rollups).
    first_interaction_at = models.DateTimeField(null=True, blank=True)
    last_interaction_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    interaction_count = models.PositiveIntegerField(default=0)
    interactions_30d = models.PositiveIntegerField(default=0)
    interactions_90d = models.PositiveIntegerField(default=0)
    interactions_365d = models.PositiveIntegerField(default=0)
    inbound_count = models.PositiveIntegerField(default=0)
    outbound_count = models.PositiveIntegerField(default=0)
    meeting_count = models.PositiveIntegerField(default=0)
    # Median gap between consecutive interactions, in days (None with fewer than two).
    typical_gap_days = models.FloatField(null=True, blank=True)
    # The last few interactions for quick display: [{"id", "kind", "occurred_at", "subject"}].
    recent_interactions = models.JSONField(default=list, blank=True)
    rollups_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # contact_list ordering by recent activity, live contacts only.
            models.Index(
                fields=["user", "-last_interaction_at"],
                name="contact_recent_idx",
                condition=Q(merged_into__isnull=True),
            ),
            models.Index(fields=["user", "company_domain"], name="contact_domain_idx"),
            models.Index(fields=["user", "display_name"], name="contact_name_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.primary_email or f"contact {self.pk}"


class IdentityKind(models.TextChoices):
    EMAIL = "email", "e-mail"


class ContactIdentity(models.Model):
    """An address that leads to a contact: the value as seen, and the key it matches on."""

    # identity_user_key_uniq (user first) and identity_contact_idx serve user and contact.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="identities", db_index=False
    )
    kind = models.CharField(max_length=16, choices=IdentityKind.choices, default=IdentityKind.EMAIL)
    # As first seen (for display), e.g. "J.Doe+crm@GMail.com".
    value = models.CharField(max_length=320)
    # Matching key: lowercased, IDNA domain; gmail.com dots and +tags folded.
    key = models.CharField(max_length=320)
    # Display names seen with this identity and how often: {"Jane Doe": 3, "jane": 1}.
    names = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "contact identities"
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "key"], name="identity_user_key_uniq")
        ]
        indexes = [models.Index(fields=["contact"], name="identity_contact_idx")]

    def __str__(self) -> str:
        return self.value


class ParticipantRole(models.TextChoices):
    FROM = "from", "from"
    TO = "to", "to"
    CC = "cc", "cc"
    BCC = "bcc", "bcc"
    REPLY_TO = "reply_to", "reply-to"
    ORGANIZER = "organizer", "organizer"
    ATTENDEE = "attendee", "attendee"


class InteractionParticipant(models.Model):
    """A contact's part in a (canonical) interaction."""

    # No single-column indexes on user, interaction, contact: participant_uniq (interaction first)
    # and participant_contact_idx (contact first) serve them; fewer indexes, faster bulk writes.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    interaction = models.ForeignKey(
        "jobs.Interaction", on_delete=models.CASCADE, related_name="participants", db_index=False
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="participations", db_index=False
    )
    identity = models.ForeignKey(
        ContactIdentity, on_delete=models.CASCADE, related_name="participations"
    )
    role = models.CharField(max_length=16, choices=ParticipantRole.choices)
    # Attendees: needsAction / accepted / declined / tentative; empty otherwise.
    response_status = models.CharField(max_length=16, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["interaction", "identity", "role"], name="participant_uniq"
            )
        ]
        indexes = [
            # Rollups and the contact page: a contact's participations, newest first.
            models.Index(fields=["contact", "-occurred_at"], name="participant_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.role} of interaction {self.interaction_id}"


class InteractionDuplicate(models.Model):
    """The same message seen twice (Takeout and API, or a list copy): `interaction` counts as
    `canonical` for participants, rollups and the timeline. Both raw rows stay."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    interaction = models.OneToOneField(
        "jobs.Interaction", on_delete=models.CASCADE, related_name="duplicate_of"
    )
    canonical = models.ForeignKey(
        "jobs.Interaction", on_delete=models.CASCADE, related_name="duplicates"
    )
    # What they share, e.g. the RFC Message-ID.
    reason = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.interaction_id} = {self.canonical_id}"


class SuggestionStatus(models.TextChoices):
    PENDING = "pending", "pending"
    ACCEPTED = "accepted", "accepted"
    REJECTED = "rejected", "rejected"


class MergeSuggestion(models.Model):
    """Two contacts that may be one person; never merged without a decision."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Ordered pair: contact_a_id < contact_b_id, so a pair is suggested once.
    contact_a = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    contact_b = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    reason = models.CharField(max_length=255)
    status = models.CharField(
        max_length=16, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "contact_a", "contact_b"], name="merge_suggestion_pair_uniq"
            ),
            models.CheckConstraint(
                condition=Q(contact_a__lt=models.F("contact_b")), name="merge_suggestion_ordered"
            ),
        ]
        indexes = [models.Index(fields=["user", "status"], name="suggestion_status_idx")]

    def __str__(self) -> str:
        return f"{self.contact_a_id} ~ {self.contact_b_id} ({self.status})"


class ContactMerge(models.Model):
    """A merge of `source` into `target` and exactly what it moved, so it can be undone."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    # {"<hook name>": [row ids moved], ...}: identities, participants, timeline events and
    # whatever later apps registered.
    moved = models.JSONField(default=dict)
    suggestion = models.ForeignKey(
        MergeSuggestion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    merged_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"merge {self.source_id} -> {self.target_id}"
