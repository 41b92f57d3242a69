"""Embeddings of users' interactions: how far they are, and re-embedding them all."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.selectors import UserNotFound, user_find
from search.selectors import embedding_status
from search.services import embeddings_rebuild_enqueue


class Command(BaseCommand):
    help = (
        "status <user>: the user's documents and embeddings per model (which one search uses). "
        "rebuild <user> | --all: embed every interaction with the configured model in the "
        "background (after a model change; search switches once it is complete)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=("status", "rebuild"))
        parser.add_argument("user", nargs="?", help="username, e-mail address or id")
        parser.add_argument("--all", action="store_true", help="rebuild: every active user")
        parser.add_argument("--json", action="store_true", help="status: one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rebuild" and options["all"]:
            if options["user"]:
                raise CommandError("give a user or --all, not both")
            users: list[Any] = list(get_user_model().objects.filter(is_active=True).order_by("pk"))
        elif not options["user"]:
            raise CommandError(
                f"{options['action']} needs a user"
                + (" or --all" if options["action"] == "rebuild" else "")
            )
        else:
            try:
                users = [user_find(identifier=options["user"])]
            except UserNotFound as exc:
                raise CommandError(str(exc)) from exc
        if options["action"] == "status":
            status = embedding_status(user_id=users[0].pk)
            if options["json"]:
                self.stdout.write(json.dumps(status))
                return
            self.stdout.write(f"documents: {status['documents']}")
            configured, searching = status["configured"], status["searching"]
            self.stdout.write(f"configured model: {configured['model']} ({configured['dims']})")
            self.stdout.write(
                f"search uses: {searching['model']} ({searching['dims']})"
                + ("" if searching["complete"] else ", still being built")
            )
            for s in status["sets"]:
                self.stdout.write(
                    f"  {s['model']} ({s['dims']}): {s['status']}, {s['vectors']} vector(s)"
                )
            return
        for user in users:
            job = embeddings_rebuild_enqueue(user_id=user.pk)
            state = "already queued" if getattr(job, "deduplicated", False) else "queued"
            self.stdout.write(f"{user}: embed (all) job {job.pk} {state}")
