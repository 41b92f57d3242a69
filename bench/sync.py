"""First Gmail sync of 2,000 messages at 100 ms per request: ours vs one messages.get at a time.

Usage: DEBUG=1 .venv/bin/python bench/sync.py [--messages 2000] [--latency-ms 100]

One emulator (every HTTP request answered after --latency-ms), one mailbox of exactly
--messages syncable messages (no spam, trash, drafts), one connected account of a throwaway user
(deleted at the end), the same client layer (jobs.google.client) on both sides:

- ours: a gmail_sync job run by the engine (run_job, inline) with the product's pacing
  defaults: batches of 50 messages.get, 200 ms pause between batches, up to 2,000 per run
  (a bigger mailbox runs the continuations too);
- sequential, the original's style: messages.list (same query), then one messages.get after the
  other.

Requests are HTTP requests counted by the emulator (a batch is one; token refreshes included).
The last line is JSON: requests_ours, requests_sequential, seconds_ours, seconds_sequential,
request_ratio, speedup.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from google_emulator.server import GoogleEmulator
    from jobs.config import get_config

    call_command("migrate", verbosity=0)
    config = get_config()
    owner = f"bench-{uuid.uuid4().hex[:8]}@pipeline.example"
    generated = syncable_mailbox(owner, args.messages, config.gmail_excluded_labels)
    user = get_user_model().objects.create_user(owner.split("@")[0], email=owner)
    try:
        with GoogleEmulator(latency_s=args.latency_ms / 1000) as emu:
            emu.add_mailbox(owner, generated)
            settings.GOOGLE_API_ROOT = emu.url
            # Leave jobs to this process; everything else stays at the product defaults.
            settings.CRM_PIPELINE = {**settings.CRM_PIPELINE, "handoff": "none"}
            account = connect(user, owner, emu)
            ours = run_ours(account, emu)
            sequential = run_sequential(account, emu)
    finally:
        user.delete()
    result = {
        "messages": args.messages,
        "latency_ms": args.latency_ms,
        "chunk_pause_s": config.gmail_chunk_pause_s,
        "stored_ours": ours["stored"],
        "fetched_sequential": sequential["fetched"],
        "runs_ours": ours["runs"],
    }
    print(json.dumps(result), file=sys.stderr)
    print(
        json.dumps(
            {
                "requests_ours": ours["requests"],
                "requests_sequential": sequential["requests"],
                "seconds_ours": round(ours["seconds"], 2),
                "seconds_sequential": round(sequential["seconds"], 2),
                "request_ratio": round(sequential["requests"] / ours["requests"], 1),
                "speedup": round(sequential["seconds"] / ours["seconds"], 1),
            }
        )
    )


def syncable_mailbox(owner: str, count: int, excluded: tuple[str, ...]):
    """A generated mailbox of exactly `count` messages a sync stores (the last 30 days)."""
    from google_emulator.generator import generate_mailbox

    generated = generate_mailbox(owner, messages=int(count * 1.2) + 20, events=0, seed=5, days=29)
    kept = [m for m in generated.messages if not set(excluded).intersection(m.label_ids)]
    generated.messages = kept[-count:]
    return generated


def connect(user, owner: str, emu):
    from jobs.google.accounts import google_account_connect

    return google_account_connect(user=user, email=owner, refresh_token=emu.register_account(owner))


def run_ours(account, emu) -> dict:
    from jobs.enqueue import enqueue
    from jobs.models import Job, RawEvent
    from jobs.runner import run_job

    emu.log.reset()
    started = time.perf_counter()
    job = enqueue("gmail_sync", user=account.user_id, payload={"account_id": account.pk})
    runs = 0
    while job is not None:
        run_job(job.pk)
        runs += 1
        job = Job.objects.filter(parent=job, kind="gmail_sync").first()
    seconds = time.perf_counter() - started
    stored = RawEvent.objects.filter(user_id=account.user_id, provider="gmail").count()
    return {"requests": emu.log.count(), "seconds": seconds, "stored": stored, "runs": runs}


def run_sequential(account, emu) -> dict:
    from jobs.config import get_config
    from jobs.google.client import execute, gmail_service
    from jobs.sync.gmail import excluded_label_ids, window_query
    from jobs.sync.windows import gmail_window_start

    # The query ours listed with: the same messages on both sides.
    query = window_query(
        start=gmail_window_start(user_id=account.user_id, full=True),
        excluded=excluded_label_ids(get_config()),
    )
    emu.log.reset()
    started = time.perf_counter()
    gmail = gmail_service(account)
    ids: list[str] = []
    page_token = None
    while True:
        page = execute(
            gmail.users()
            .messages()
            .list(userId="me", q=query, maxResults=500, pageToken=page_token),
            account=account,
        )
        ids += [ref["id"] for ref in page.get("messages", [])]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    fetched = 0
    for message_id in ids:
        execute(
            gmail.users().messages().get(userId="me", id=message_id, format="full"),
            account=account,
        )
        fetched += 1
    seconds = time.perf_counter() - started
    return {"requests": emu.log.count(), "seconds": seconds, "fetched": fetched}


if __name__ == "__main__":
    main()
