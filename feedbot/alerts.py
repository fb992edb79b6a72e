"""Who is told about what: the plan of one batch's alerts, decided without I/O.

:func:`plan_alerts` takes what a batch of ingestion did to events (new, content
changed, removed), the active subscriptions, which stored events link to the
batch's events, and what each subscription was told before; it answers with the
deliveries to queue, each with its webhook-id, matched topics and reply threading.
The store loads those inputs and writes the answer in the transaction that stores
the events (``store/outbox.py``); nothing here reads or writes anything.

The rules (README: "Webhooks"):

- A subscription gets an alert of a kind only if its ``events`` list that kind
  (default: created only), and only for an event its topics and keywords match
  (:meth:`Subscription.matched_topics`; an update is matched on the new content,
  a removal on the content as last stored).
- ``event.created`` comes at most once per subscription and event: its webhook-id
  is derived from the pair alone, so an event that is new again (a page that came
  back) is not announced twice.
- ``event.updated`` and ``event.deleted`` come once per change: the n-th alert of
  a kind about one event to one subscription has sequence n, which its webhook-id
  includes, so every retry of one alert has one id and no two alerts share one.
- Threading: a created alert's ``in_reply_to`` lists the events it relates to (in
  either direction) that the subscription was alerted about before, including
  earlier alerts of the same batch (created ones in event date order first). An
  update or removal is about the event itself, so it replies to nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from feedbot.errors import ConfigError
from feedbot.model import EVENT_KINDS, AlertKind, Event, Subscription

# The order the kinds of a batch are planned in; earlier ones may be replied to.
_KIND_ORDER = {AlertKind.CREATED: 0, AlertKind.UPDATED: 1, AlertKind.DELETED: 2}


def delivery_id(
    subscription_id: str, event_id: str, kind: AlertKind = AlertKind.CREATED, sequence: int = 0
) -> str:
    """The webhook-id of one alert: the same for every attempt and every replay.

    A created alert's id depends on the subscription and the event alone (as it
    always has: receivers that keep ids to drop repeats keep working); an update's
    or a removal's also on its kind and sequence number."""
    text = f"{subscription_id}\n{event_id}"
    if kind is not AlertKind.CREATED:
        text += f"\n{kind.value}\n{sequence}"
    return "msg_" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def alert_kinds(values: Iterable[object]) -> tuple[AlertKind, ...]:
    """The alert kinds a list of ``"created"``, ``"updated"`` and ``"deleted"``
    names (any of them, at least one; repeats dropped), in that order; a
    ValueError saying what is wrong with anything else."""
    if isinstance(values, str | bytes):
        raise ValueError(f"give a list, such as [{_quoted(values)}], not a string {values!r}")
    kinds: set[AlertKind] = set()
    for value in values:
        try:
            kind = AlertKind(value.strip().lower() if isinstance(value, str) else "")
            if kind not in EVENT_KINDS:
                raise ValueError
            kinds.add(kind)
        except ValueError:
            known = ", ".join(f'"{kind.value}"' for kind in EVENT_KINDS)
            raise ValueError(f"unknown alert kind {value!r} (expected {known})") from None
    if not kinds:
        raise ValueError('give at least one of "created", "updated" and "deleted"')
    return tuple(kind for kind in EVENT_KINDS if kind in kinds)


def parse_events(values: Iterable[object]) -> tuple[AlertKind, ...]:
    """A subscription's ``events`` key (:func:`alert_kinds`); a ConfigError naming
    the key ``events`` and what is wrong."""
    try:
        return alert_kinds(values)
    except ValueError as exc:
        raise ConfigError(f"events: {exc}") from None


def _quoted(value: str | bytes) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    return ", ".join(f'"{part.strip()}"' for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class EventChange:
    """One thing a batch did to an event: it is new, its content changed (the
    title before is ``previous_title``), or it was removed (``event`` as last
    stored)."""

    kind: AlertKind
    event: Event
    previous_title: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """One alert to queue."""

    subscription_id: str
    event_id: str
    kind: AlertKind
    sequence: int  # 0 for created; n for the n-th update (or removal) alert
    matched_topics: tuple[str, ...]
    in_reply_to: tuple[str, ...]  # event ids, sorted
    previous_title: str | None = None  # of an update

    @property
    def id(self) -> str:
        return delivery_id(self.subscription_id, self.event_id, self.kind, self.sequence)


# What a subscription was alerted about before: (subscription id, event id) ->
# how many alerts of each kind it got about that event (for updated and deleted,
# the highest sequence number queued).
Alerted = Mapping[tuple[str, str], Mapping[AlertKind, int]]


def plan_alerts(
    events: Iterable[EventChange],
    subscriptions: Iterable[Subscription],
    links: Mapping[str, Collection[str]],
    already_alerted: Alerted,
) -> list[PlannedDelivery]:
    """The deliveries that ``events`` bring to ``subscriptions`` (the active ones).

    ``links`` maps an event id to the ids of stored events whose related lists
    name it (the other direction, an event's own related list, is in the event).
    ``already_alerted`` says what each subscription got before this batch; it
    need only cover the batch's events and the events they relate to.

    The answer is the same for the same inputs in any order: events go by kind
    (created, updated, deleted), then date and id; subscriptions by id.
    """
    subscribers = sorted(subscriptions, key=lambda s: s.id)
    if not subscribers:
        return []
    ordered = sorted(events, key=lambda c: (_KIND_ORDER[c.kind], c.event.date, c.event.id))
    # (subscription id, event id) pairs it was alerted about, of any kind: what a
    # created alert may reply to. Grows as the batch is planned.
    heard = {key for key, kinds in already_alerted.items() if any(kinds.values())}
    counts: dict[tuple[str, str], dict[AlertKind, int]] = {}  # copies, as planned

    planned: list[PlannedDelivery] = []
    for change in ordered:
        event, kind = change.event, change.kind
        related: set[str] = {r.id for r in event.related}
        related.update(links.get(event.id, ()))
        related.discard(event.id)
        for subscription in subscribers:
            if kind not in subscription.events:
                continue
            matched = subscription.matched_topics(event)
            if matched is None:
                continue
            key = (subscription.id, event.id)
            before = counts.get(key)
            if before is None:
                before = counts[key] = dict(already_alerted.get(key, {}))
            sent = before.get(kind, 0)
            if kind is AlertKind.CREATED and sent:
                continue  # announced already: never twice
            replies: tuple[str, ...] = ()
            if kind is AlertKind.CREATED and related:
                sid = subscription.id
                replies = tuple(sorted(rid for rid in related if (sid, rid) in heard))
            before[kind] = sent + 1
            heard.add(key)
            planned.append(
                PlannedDelivery(
                    subscription_id=subscription.id,
                    event_id=event.id,
                    kind=kind,
                    sequence=0 if kind is AlertKind.CREATED else sent + 1,
                    matched_topics=tuple(matched),
                    in_reply_to=replies,
                    previous_title=change.previous_title if kind is AlertKind.UPDATED else None,
                )
            )
    return planned


def changes_of(
    new: Sequence[Event], updated: Sequence[tuple[Event, str]], deleted: Sequence[Event]
) -> list[EventChange]:
    """The batch's changes, from what the store was given."""
    return [
        *(EventChange(AlertKind.CREATED, event) for event in new),
        *(EventChange(AlertKind.UPDATED, event, previous) for event, previous in updated),
        *(EventChange(AlertKind.DELETED, event) for event in deleted),
    ]
