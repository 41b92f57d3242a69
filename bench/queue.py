"""2,000 no-op jobs through our engine vs 2,000 bare django-q2 async_task calls, same cluster.

Usage: DEBUG=1 python bench/queue.py [--jobs 2000] [--broker orm|redis|all]

Both sides run against one warm `qcluster` subprocess (2 workers) on the same broker; each side's
time runs from its first enqueue until its last item is done (ours: every Job row `succeeded`;
bare: the broker queue drained, i.e. every task acknowledged). Enqueueing happens while the
cluster consumes, as in production. Prints one JSON line per broker, and last the ORM result.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Running as a script puts bench/ first on sys.path, where this file would shadow stdlib `queue`.
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--broker", choices=["orm", "redis", "all"], default=None)
    parser.add_argument("--child", choices=["orm", "redis"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.jobs)))
        return
    brokers = {"orm": ["orm"], "redis": ["redis"], "all": ["orm", "redis"]}.get(
        args.broker or "", ["orm", "redis"] if os.environ.get("REDIS_URL") else ["orm"]
    )
    results = {}
    for broker in brokers:
        env = dict(os.environ, DEBUG=os.environ.get("DEBUG", "1"))
        if broker == "orm":
            env.pop("REDIS_URL", None)
        elif not env.get("REDIS_URL"):
            env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        out = subprocess.run(
            [sys.executable, __file__, "--child", broker, "--jobs", str(args.jobs)],
            env=env,
            capture_output=True,
            text=True,
        )
        sys.stderr.write(out.stderr)
        if out.returncode:
            raise SystemExit(f"the {broker} run failed (exit {out.returncode}); see above")
        results[broker] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[broker]), flush=True)
    final = dict(results.get("orm") or next(iter(results.values())))
    if "redis" in results and "orm" in results:
        final["redis"] = results["redis"]
    print(json.dumps(final))


def run_one(broker: str, n: int) -> dict[str, object]:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    if (broker == "redis") != bool(os.environ.get("REDIS_URL")):
        raise SystemExit("--child redis needs REDIS_URL; --child orm needs it unset")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    from jobs.enqueue import enqueue
    from jobs.models import Job, JobStatus

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-queue")
    Job.objects.filter(user=user).delete()
    q_broker = get_broker()
    q_broker.purge_queue()

    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO_ROOT,
        env=dict(os.environ, DJANGO_SETTINGS_MODULE="bench.settings", Q_WORKERS="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        warm_up(q_broker, async_task)
        log(f"[{broker}] bare django-q2: {n} async_task calls")
        started = time.perf_counter()
        for _ in range(n):
            async_task("bench.processors.noop")
        wait(lambda: q_broker.queue_size() == 0, f"[{broker}] bare queue to drain")
        bare_s = time.perf_counter() - started

        log(f"[{broker}] ours: {n} enqueue() calls, each committed")
        started = time.perf_counter()
        for _ in range(n):
            with transaction.atomic():
                enqueue("bench_noop", user=user)
        wait(
            lambda: Job.objects.filter(user=user, status=JobStatus.SUCCEEDED).count() == n,
            f"[{broker}] our jobs to succeed",
        )
        ours_s = time.perf_counter() - started
    finally:
        cluster.terminate()  # the main process stops its own workers in order
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
    Job.objects.filter(user=user).delete()
    return {
        "broker": broker,
        "jobs": n,
        "ours_per_s": round(n / ours_s, 1),
        "bare_per_s": round(n / bare_s, 1),
        "ratio": round(bare_s / ours_s, 3),
    }


def warm_up(q_broker: object, async_task: object) -> None:
    for _ in range(20):
        async_task("bench.processors.noop")  # type: ignore[operator]
    wait(lambda: q_broker.queue_size() == 0, "the cluster to start")  # type: ignore[attr-defined]


def wait(predicate: object, what: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    last = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        if time.monotonic() - last > 5:
            log(f"  ... waiting for {what}")
            last = time.monotonic()
        time.sleep(0.05)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
