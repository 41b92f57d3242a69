"""First Gmail sync on the honest emulator (latency, per-part pricing, quota): ours vs baselines.

Usage: DEBUG=1 .venv/bin/python bench/sync.py [--messages 4000] [--latency-ms 100]
       [--part-latency-ms 100] [--part-concurrency 10] [--sequential-sample 150]

One emulator enforcing Google's 2026 quotas over a sliding minute (6,000 Gmail units per user,
1,200,000 per project; messages.get = 5 units, every part of a batch priced), adding
--latency-ms to every HTTP request and --part-latency-ms to every call in it (batch parts are
served --part-concurrency at a time), serving one mailbox of exactly --messages syncable
messages to one connected account of a throwaway user (deleted at the end). Three ways to
fetch them, one after the other, each starting with an empty quota window:

- ours: gmail_sync jobs run by the engine in this process (run_due_jobs, continuations and
  quota retries included) with the product defaults: batches of 50 messages.get, the pacer
  holding 6,000 units per user over a sliding window, waits beyond google_retry_after_cap_s
  handed back to the engine as retries;
- competent: what a competent engineer writes without our engine: the same messages.list, then
  batched messages.get (50 per batch), no pacer, parts answered 429 sent again after an
  exponential backoff with jitter (1 s doubling to 32 s, reset after a clean batch); nothing
  stored;
- sequential (the style of the system this replaced): messages.list, then one messages.get at a
  time through jobs.google.client.execute. Run on --sequential-sample messages and
  extrapolated (requests are exact: one per message plus the list pages; time scales
  linearly, the quota never binds at one call per ~200 ms).

units_per_min is the mean, over every one-minute window that ends during the run (one per
second, from a minute after the start), of the Gmail units the emulator charged in it: the
rate held against the per-user limit. peak_units_per_min is the busiest sliding minute, which
must not exceed the limit. The last line is JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import bisect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

WINDOW_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--part-latency-ms", type=float, default=100.0)
    parser.add_argument("--part-concurrency", type=int, default=10)
    parser.add_argument("--sequential-sample", type=int, default=150)
    parser.add_argument(
        "--only", choices=["ours", "competent", "sequential"], action="append", default=[]
    )
    args = parser.parse_args()
    sides = args.only or ["ours", "competent", "sequential"]

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from google_emulator.quota import QuotaLimits
    from google_emulator.server import GoogleEmulator
    from jobs.config import get_config

    call_command("migrate", verbosity=0)
    config = get_config()
    limit = config.gmail_quota_units_per_user_per_minute
    owner = f"bench-{uuid.uuid4().hex[:8]}@pipeline.example"
    generated = syncable_mailbox(owner, args.messages, config.gmail_excluded_labels)
    user = get_user_model().objects.create_user(owner.split("@")[0], email=owner)
    results: dict[str, dict] = {}
    emulator = GoogleEmulator(
        latency_s=args.latency_ms / 1000,
        part_latency_s=args.part_latency_ms / 1000,
        part_concurrency=args.part_concurrency,
        quota=QuotaLimits(gmail_units_per_user=limit),
    )
    try:
        with emulator as emu:
            emu.add_mailbox(owner, generated)
            settings.GOOGLE_API_ROOT = emu.url
            # Leave jobs to this process; everything else stays at the product defaults.
            settings.CRM_PIPELINE = {**settings.CRM_PIPELINE, "handoff": "none"}
            account = connect(user, owner, emu)
            query = listing_query(account)
            for side in sides:
                fresh_quota(emu)
                say(f"{side}: starting")
                if side == "ours":
                    results[side] = run_ours(account, emu)
                elif side == "competent":
                    results[side] = run_competent(account, emu, query)
                else:
                    results[side] = run_sequential(account, emu, query, args.sequential_sample)
                results[side].update(quota_figures(emu, results[side]))
                say(f"{side}: {json.dumps(results[side])}")
    finally:
        user.delete()
    print(json.dumps(summary(args, limit, results)))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The figures of a side's run in the summary (as <figure>_<side>), in this order.
FIGURES = (
    "units_per_min",
    "peak_units_per_min",
    "quota_429",
    "requests",
    "seconds",
    "messages_per_s",
)
OURS_FIGURES = (FIGURES[0], "limit_share", *FIGURES[1:], "stored")


def summary(args: argparse.Namespace, limit: int, results: dict[str, dict]) -> dict:
    out: dict = {
        "messages": args.messages,
        "latency_ms": args.latency_ms,
        "part_latency_ms": args.part_latency_ms,
        "part_concurrency": args.part_concurrency,
        "limit_units_per_min": limit,
    }
    ours = results.get("ours")
    competent = results.get("competent")
    sequential = results.get("sequential")
    if ours:
        share = round(ours["units_per_min"] / limit, 3) if ours["units_per_min"] else None
        ours = {**ours, "limit_share": share}
    for side, run, figures in (("ours", ours, OURS_FIGURES), ("competent", competent, FIGURES)):
        if run:
            out |= {f"{figure}_{side}": run[figure] for figure in figures}
    if sequential:
        out |= {
            "requests_sequential": sequential["requests_extrapolated"],
            "seconds_sequential_est": sequential["seconds_extrapolated"],
        }
    if ours and sequential:
        out["request_ratio_vs_sequential"] = round(
            sequential["requests_extrapolated"] / ours["requests"], 1
        )
    if ours and competent:
        out["speedup_vs_competent"] = round(competent["seconds"] / ours["seconds"], 2)
        out["request_ratio_vs_competent"] = round(competent["requests"] / ours["requests"], 2)
    return out


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


def listing_query(account) -> str:
    """The query gmail_sync lists with, so every side fetches the same messages."""
    from jobs.config import get_config
    from jobs.sync.gmail import excluded_label_ids, window_query
    from jobs.sync.windows import gmail_window_start

    return window_query(
        start=gmail_window_start(user_id=account.user_id, full=True),
        excluded=excluded_label_ids(get_config()),
    )


def fresh_quota(emu) -> None:
    """Start a side with an empty quota window, on the emulator and in the pacer."""
    from google_emulator.quota import QuotaMeter
    from jobs.models import QuotaUsage

    emu.quota = QuotaMeter(emu.quota.limits)
    QuotaUsage.objects.all().delete()
    emu.log.reset()


def quota_figures(emu, result: dict) -> dict:
    """Units charged per sliding minute (mean over the run, and the peak) and quota 429s."""
    spends = sorted((e.at, e.quota_units) for e in emu.log.entries if e.quota_units)
    if not spends:
        return {"units_per_min": 0, "peak_units_per_min": 0, "quota_429": emu.quota_rejections}
    times = [at for at, _ in spends]
    running = [0.0]
    for _, units in spends:
        running.append(running[-1] + units)

    def window_ending(t: float) -> float:  # units in (t - 60, t]
        return running[bisect.bisect_right(times, t)] - running[bisect.bisect_right(times, t - 60)]

    start, end = result["started_at"], result["ended_at"]
    ends = [start + WINDOW_S + i for i in range(int(end - start - WINDOW_S) + 1)]
    mean = sum(map(window_ending, ends)) / len(ends) if ends else None
    peak = max(window_ending(t) for t in times)
    result.pop("started_at"), result.pop("ended_at")
    return {
        "units": int(running[-1]),
        "units_per_min": round(mean) if mean is not None else None,
        "peak_units_per_min": round(peak),
        "quota_429": emu.quota_rejections,
    }


def run_ours(account, emu) -> dict:
    from jobs.enqueue import enqueue
    from jobs.models import Job, JobStatus, RawEvent
    from jobs.models.job import ACTIVE_STATUSES
    from jobs.runner import run_due_jobs

    started, at = time.perf_counter(), time.monotonic()
    enqueue("gmail_sync", user=account.user_id, payload={"account_id": account.pk})
    mine = Job.objects.filter(user_id=account.user_id, kind="gmail_sync")
    while True:
        run_due_jobs(kinds=["gmail_sync"], until_empty=True)
        if not mine.filter(status__in=ACTIVE_STATUSES).exists():
            break
        time.sleep(0.1)  # a quota retry waiting out its run_after
    seconds = time.perf_counter() - started
    stored = RawEvent.objects.filter(user_id=account.user_id, provider="gmail").count()
    failed = list(mine.exclude(status=JobStatus.SUCCEEDED).values_list("pk", "last_error"))
    if failed:
        say(f"ours: jobs not succeeded: {failed}")
    return {
        "requests": emu.log.count(),
        "seconds": round(seconds, 1),
        "stored": stored,
        "runs": mine.count(),
        "retries": sum(max(0, job.attempts - 1) for job in mine),
        "messages_per_s": round(stored / seconds, 1),
        "started_at": at,
        "ended_at": time.monotonic(),
    }


def run_competent(account, emu, query: str) -> dict:
    from googleapiclient.errors import HttpError

    from jobs.google.client import gmail_service

    started, at = time.perf_counter(), time.monotonic()
    gmail = gmail_service(account)
    seen_429 = 0
    backoff = Backoff()

    def call(request):
        nonlocal seen_429
        while True:
            try:
                return request.execute()
            except HttpError as exc:
                if exc.status_code != 429:
                    raise
                seen_429 += 1
                backoff.wait()

    ids: list[str] = []
    page_token = None
    while True:
        listing = gmail.users().messages()
        page = call(listing.list(userId="me", q=query, maxResults=500, pageToken=page_token))
        ids += [ref["id"] for ref in page.get("messages", [])]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    fetched = 0
    for start in range(0, len(ids), 50):
        todo = ids[start : start + 50]
        while todo:
            again: list[str] = []

            def on_part(request_id: str, response, exception, again=again) -> None:
                nonlocal fetched, seen_429
                if exception is None:
                    fetched += 1
                elif isinstance(exception, HttpError) and exception.status_code == 429:
                    seen_429 += 1
                    again.append(request_id)
                else:
                    raise exception

            batch = gmail.new_batch_http_request(callback=on_part)
            for message_id in todo:
                batch.add(
                    gmail.users().messages().get(userId="me", id=message_id, format="full"),
                    request_id=message_id,
                )
            batch.execute()
            if again:
                backoff.wait()
            else:
                backoff.reset()
            todo = again
    seconds = time.perf_counter() - started
    return {
        "requests": emu.log.count(),
        "seconds": round(seconds, 1),
        "fetched": fetched,
        "client_429": seen_429,
        "messages_per_s": round(fetched / seconds, 1),
        "started_at": at,
        "ended_at": time.monotonic(),
    }


class Backoff:
    """Exponential backoff with jitter: 1 s doubling up to 32 s, reset after a success."""

    def __init__(self) -> None:
        self.attempt = 0

    def wait(self) -> None:
        delay = min(32.0, 2.0**self.attempt) * random.uniform(0.5, 1.0)
        self.attempt += 1
        time.sleep(delay)

    def reset(self) -> None:
        self.attempt = 0


def run_sequential(account, emu, query: str, sample: int) -> dict:
    from jobs.google.client import execute, gmail_service

    started, at = time.perf_counter(), time.monotonic()
    gmail = gmail_service(account)
    ids: list[str] = []
    pages = 0
    page_token = None
    while True:
        listing = gmail.users().messages()
        page = execute(
            listing.list(userId="me", q=query, maxResults=500, pageToken=page_token),
            account=account,
        )
        pages += 1
        ids += [ref["id"] for ref in page.get("messages", [])]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    listed = time.perf_counter() - started
    fetch_started = time.perf_counter()
    for message_id in ids[:sample]:
        execute(
            gmail.users().messages().get(userId="me", id=message_id, format="full"),
            account=account,
        )
    per_message = (time.perf_counter() - fetch_started) / max(1, min(sample, len(ids)))
    return {
        "sample": min(sample, len(ids)),
        "requests": emu.log.count(),
        "requests_extrapolated": pages + len(ids) + (emu.log.count(route="oauth.token")),
        "seconds_extrapolated": round(listed + per_message * len(ids), 1),
        "seconds_per_message": round(per_message, 3),
        "started_at": at,
        "ended_at": time.monotonic(),
    }


if __name__ == "__main__":
    main()
