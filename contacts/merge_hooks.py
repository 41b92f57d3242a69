"""What a contact merge moves, as a registry other apps add to (contacts never imports them).

An app registers, usually in its AppConfig.ready()::

    from contacts import merge_hooks
    merge_hooks.register("timeline_events", move=..., restore=...)

- ``move(*, user_id, source_id, target_id) -> list[int]`` re-points the source contact's rows
  to the target and returns the ids it moved. A row it cannot move (a unique conflict: the
  target already has the same row) stays on the source, which is hidden once merged.
- ``restore(*, user_id, source_id, target_id, ids)`` puts back on the source those of the
  rows `ids` that are still on the target; it may also move back rows that belong with the
  source's participations (contacts restores participations before any hook runs).

Hooks run in registration order on merge and in reverse order on unmerge (after contacts' own
identities and participations), inside the merge's transaction.
``ContactMerge.moved`` keeps ``{name: ids}`` per hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class MoveFn(Protocol):
    def __call__(self, *, user_id: int, source_id: int, target_id: int) -> list[int]: ...


class RestoreFn(Protocol):
    def __call__(self, *, user_id: int, source_id: int, target_id: int, ids: list[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class MergeHook:
    name: str
    move: MoveFn
    restore: RestoreFn


_HOOKS: dict[str, MergeHook] = {}


def register(name: str, move: MoveFn | Callable[..., list[int]], restore: RestoreFn) -> None:
    """Add (or replace, by name: ready() may run twice in tests) what a merge moves."""
    if not name or not callable(move) or not callable(restore):
        raise ValueError("a merge hook needs a name, a move and a restore function")
    _HOOKS[name] = MergeHook(name, move, restore)


def unregister(name: str) -> None:
    _HOOKS.pop(name, None)


def hooks() -> list[MergeHook]:
    """The registered hooks, in registration order."""
    return list(_HOOKS.values())
