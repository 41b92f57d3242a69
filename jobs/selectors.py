"""Reads shared by the commands: finding the user an operator named."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser


class UserNotFound(LookupError):
    """No single user matches what the operator typed; the message says why."""


def user_find(*, identifier: str) -> AbstractBaseUser:
    """A user by username, else e-mail address (case-insensitive, must be unique), else id."""
    model = get_user_model()
    text = identifier.strip()
    user = model.objects.filter(**{model.USERNAME_FIELD: text}).first()
    if user is None and "@" in text:
        matches = list(
            model.objects.filter(**{f"{model.get_email_field_name()}__iexact": text})[:2]
        )
        if len(matches) > 1:
            raise UserNotFound(f"user '{identifier}' is ambiguous: give the username or id")
        user = matches[0] if matches else None
    if user is None and text.isdigit():
        user = model.objects.filter(pk=int(text)).first()
    if user is None:
        raise UserNotFound(f"user '{identifier}' does not exist")
    return user
