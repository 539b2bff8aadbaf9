"""The shared state of the fake outside systems, kept in Redis so that several processes see one world.

A test, and the real RQ worker processes it starts (and SIGKILLs), each build
their own ``FakeWorld`` on the same Redis URL and prefix; the fakes in
``tests.fakes.providers`` read and write everything through it. Besides the
things the fakes hold (repositories, jobs, namespaces...), the world keeps
counters (calls per operation, creations per kind and name) and injection
rules that make the next calls of an operation fail, crash, pause or lag.

Every rule is consumed by a Lua script, so that two workers hitting the same
operation at once never both take a rule meant to fire once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from integrations.ci import CIServer
from integrations.cluster import ClusterAccess
from integrations.delivery import Delivery
from integrations.errors import AuthFailed, Conflict, IntegrationError, InvalidRequest, RateLimited, Unavailable
from integrations.logs import LogLine, LogStore
from integrations.registry import ImageRegistry
from integrations.scm import SourceControl


class SimulatedCrash(BaseException):
    """The process "died" here. A BaseException, so that ``except Exception`` handlers let it through."""


CONTRACTS: dict[str, type] = {
    "scm": SourceControl, "ci": CIServer, "registry": ImageRegistry,
    "cluster": ClusterAccess, "delivery": Delivery, "logs": LogStore,
}
# Every "<contract>.<method>" a rule may name: a misspelt op would otherwise never fire, silently.
OPERATIONS: frozenset[str] = frozenset(
    f"{contract}.{name}" for contract, protocol in CONTRACTS.items()
    for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")
)
# Kinds of things the world holds; those marked "counter" get ids from a counter, the others are named by their name.
KINDS: dict[str, str] = {
    "repository": "counter", "webhook": "counter", "job": "name", "build": "name", "image_repository": "name",
    "namespace": "name", "manifest": "name", "delivery_application": "name", "delivery_project": "name",
    "delivery_cluster": "name",
}
ERRORS: dict[str, tuple[type[IntegrationError], int]] = {
    "transient": (Unavailable, 503), "permanent": (InvalidRequest, 422), "auth": (AuthFailed, 401),
    "conflict": (Conflict, 409), "invalid": (InvalidRequest, 400), "rate_limited": (RateLimited, 429),
}
PHASES = ("before", "after")
POLL = 0.02
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# KEYS[1]: the op's rules hash (id -> JSON rule); ARGV[1]: the phase.
# Takes the oldest rule of that phase, spending one of its times; returns it, or nil.
# A rule with "skip" lets that many calls pass first (to reach, say, the second repository created).
_TAKE_RULE = """
local best_id, best
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local id = tonumber(fields[i])
  local rule = cjson.decode(fields[i + 1])
  if rule.when == ARGV[1] and (best_id == nil or id < best_id) then best_id, best = id, rule end
end
if best == nil then return nil end
if best.skip ~= nil and best.skip > 0 then
  best.skip = best.skip - 1
  redis.call('HSET', KEYS[1], best_id, cjson.encode(best))
  return nil
end
if best.times ~= -1 then
  best.times = best.times - 1
  if best.times <= 0 then redis.call('HDEL', KEYS[1], best_id)
  else redis.call('HSET', KEYS[1], best_id, cjson.encode(best)) end
end
return cjson.encode(best)
"""

# KEYS: objects, names, keys, creations. ARGV: key, external_id, record JSON, mode, count.
# mode "create": store unless the key is taken. mode "upsert": replace the record when the owner matches.
# Returns {status, external_id, stored record}: status 1 created, 2 updated, 0 key taken, -1 owned by another.
_STORE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  local old = redis.call('HGET', KEYS[1], existing)
  if ARGV[4] == 'create' then return {0, existing, old} end
  if cjson.decode(old).owner ~= cjson.decode(ARGV[3]).owner then return {-1, existing, old} end
  redis.call('HSET', KEYS[1], existing, ARGV[3])
  return {2, existing, ARGV[3]}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[4], ARGV[1], 1) end
return {1, ARGV[2], ARGV[3]}
"""

# KEYS: objects, names, keys. ARGV: external_id. Returns the removed record, or nil.
_REMOVE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return nil end
local key = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if key and redis.call('HGET', KEYS[2], key) == ARGV[1] then redis.call('HDEL', KEYS[2], key) end
return record
"""


class FakeWorld:
    """All state of the fakes, under Redis keys starting with ``prefix``."""

    def __init__(self, redis_url: str, prefix: str = "fake"):
        self.redis = redis.Redis.from_url(redis_url)
        self.prefix = prefix
        self._take_rule = self.redis.register_script(_TAKE_RULE)
        self._store = self.redis.register_script(_STORE)
        self._remove = self.redis.register_script(_REMOVE)

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def close(self) -> None:
        self.redis.close()

    def reset(self) -> None:
        """Delete every key under the prefix: things, counters, rules, paused calls."""
        batch: list[bytes] = []
        for k in self.redis.scan_iter(match=f"{_glob_escape(self.prefix)}:*", count=500):
            batch.append(k)
            if len(batch) >= 500:
                self.redis.delete(*batch)
                batch.clear()
        if batch:
            self.redis.delete(*batch)

    # --- what the world holds ------------------------------------------------------------------

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Everything of ``kind`` that exists now: external id -> stored record (name, owner, url, attributes)."""
        raw = self.redis.hgetall(self._objects_key(kind))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def count(self, kind: str) -> int:
        return int(self.redis.hlen(self._objects_key(kind)))

    def creations(self, kind: str) -> int:
        """How many times a fake created a thing of ``kind``, ever (deletes do not lower it)."""
        return sum(self.creations_by_name(kind).values())

    def creations_by_name(self, kind: str) -> dict[str, int]:
        """Creations per name (for webhooks, per ``<repository_id>:<url>``); a value above 1 is a re-creation."""
        raw = self.redis.hgetall(self.key("creations", _checked_kind(kind)))
        return {k.decode(): int(v) for k, v in raw.items()}

    def calls(self, op: str) -> int:
        """How many calls of ``op`` began, including those that failed or crashed."""
        value = self.redis.hget(self.key("calls"), _checked_op(op))
        return int(value or 0)

    def seed(self, kind: str, name: str, owner: str | None = None, external_id: str | None = None,
             key: str | None = None, **attributes: Any) -> str:
        """Put a thing into the world as if someone else made it (not counted as a creation); returns its id."""
        record = {"name": name, "owner": owner, "url": "", **attributes}
        status, eid, _ = self.store(kind, key or name, record, external_id=external_id, count=False)
        if status != 1:
            raise ValueError(f"{kind} {key or name!r} exists already")
        return eid

    def store(self, kind: str, key: str, record: dict[str, Any], external_id: str | None = None,
              mode: str = "create", count: bool = True) -> tuple[int, str, dict[str, Any]]:
        """Store atomically; see ``_STORE`` for the status. The id is ``external_id``, a counter, or ``key``."""
        if external_id is None:
            external_id = str(self.next_id(kind)) if KINDS.get(kind) == "counter" else key
        status, eid, stored = self._store(
            keys=[self._objects_key(kind), self.key("names", kind), self.key("keys", kind),
                  self.key("creations", kind)],
            args=[key, external_id, json.dumps(record), mode, "1" if count else "0"],
        )
        return int(status), eid.decode(), json.loads(stored)

    def get(self, kind: str, external_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self._objects_key(kind), external_id)
        return json.loads(raw) if raw is not None else None

    def find(self, kind: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """The (external id, record) stored under ``key``, or None."""
        eid = self.redis.hget(self.key("names", kind), key)
        if eid is None:
            return None
        record = self.get(kind, eid.decode())
        return (eid.decode(), record) if record is not None else None

    def remove(self, kind: str, external_id: str) -> dict[str, Any] | None:
        """Delete a thing; returns its record, or None when it was not there."""
        raw = self._remove(keys=[self._objects_key(kind), self.key("names", kind), self.key("keys", kind)],
                           args=[external_id])
        return json.loads(raw) if raw is not None else None

    def next_id(self, counter: str) -> int:
        return int(self.redis.incr(self.key("seq", counter)))

    def _objects_key(self, kind: str) -> str:
        return self.key("objects", _checked_kind(kind))

    # --- images and logs that exist outside the portal's doing -----------------------------------

    def add_image_tag(self, repository: str, tag: str, digest: str = "") -> None:
        """A tag pushed to the registry (by a build, say)."""
        digest = digest or "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
        self.redis.hset(self.key("tags", repository), tag, digest)

    def add_log_lines(self, namespace: str, lines: Iterable[LogLine | Mapping[str, Any] | str]) -> None:
        """Append log lines of ``namespace``; a plain string becomes a line of pod ``pod-0`` stamped now.

        Each line gets a sequence number that breaks ties between equal timestamps, in the order added.
        """
        items = list(lines)
        if not items:
            return
        last = int(self.redis.incrby(self.key("seq", "logline"), len(items)))
        now = datetime.now(timezone.utc)
        encoded = []
        for seq, line in enumerate(items, start=last - len(items) + 1):
            if isinstance(line, str):
                fields: dict[str, Any] = {"timestamp": now, "message": line, "pod": "pod-0", "container": "app"}
            elif isinstance(line, LogLine):
                fields = {f: getattr(line, f) for f in ("timestamp", "message", "pod", "container", "stream")}
            else:
                fields = dict(line)
            encoded.append(json.dumps({
                "ts": micros(fields["timestamp"]), "message": fields["message"], "pod": fields.get("pod", "pod-0"),
                "container": fields.get("container", "app"), "stream": fields.get("stream", "stdout"), "seq": seq,
            }))
        self.redis.rpush(self.key("logs", namespace), *encoded)

    def log_lines(self, namespace: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(self.key("logs", namespace), 0, -1)]

    # --- injection rules ---------------------------------------------------------------------------

    def fail(self, op: str, error: str = "transient", times: int | None = 1, message: str | None = None,
             when: str = "before", skip: int = 0) -> None:
        """The next ``times`` calls of ``op`` raise the error class of ``error`` (``times=None``: every call).

        ``when="after"`` raises once the call's side effect is stored, like a timeout after the system acted.
        """
        if error not in ERRORS:
            raise ValueError(f"unknown error {error!r}; one of {', '.join(ERRORS)}")
        self._add_rule(op, {"kind": "fail", "error": error, "message": message, "skip": skip}, when, times)

    def crash(self, op: str, when: str = "before", times: int | None = 1, kill: bool = False, skip: int = 0) -> None:
        """The next ``times`` calls of ``op`` raise SimulatedCrash, before acting or after storing the effect.

        ``kill=True`` makes the calling process SIGKILL itself instead: for worker processes only,
        since RQ records even a BaseException as a failed job rather than a dead worker.
        """
        self._add_rule(op, {"kind": "crash", "kill": kill, "skip": skip}, when, times)

    def pause(self, op: str, when: str = "before", skip: int = 0) -> None:
        """The next call of ``op`` blocks, its pid recorded, until ``release(op)``; see ``wait_paused``."""
        self._add_rule(op, {"kind": "pause", "skip": skip}, when, 1)

    def release(self, op: str) -> None:
        """Unblock every call paused at ``op`` and drop its pauses not reached yet."""
        self._drop_rules(op, {"pause"})
        self.redis.set(self.key("released", op), int(self.redis.get(self.key("seq", "rule")) or 0))

    def wait_paused(self, op: str, timeout: float = 10.0) -> int:
        """The pid of a live process blocked at ``op``, waiting up to ``timeout`` seconds for one."""
        op = _checked_op(op)
        deadline = time.monotonic() + timeout
        while True:
            released = int(self.redis.get(self.key("released", op)) or 0)
            paused = {int(k): int(v) for k, v in self.redis.hgetall(self.key("paused", op)).items()}
            alive = [pid for rule_id, pid in sorted(paused.items()) if rule_id > released and _alive(pid)]
            if alive:
                return alive[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no process paused at {op} within {timeout}s: did the call happen, "
                                   f"with world prefix {self.prefix!r}, after pause({op!r})?")
            time.sleep(POLL)

    def clear_failures(self, op: str | None = None) -> None:
        """Drop the fail and crash rules of ``op``, or of every op."""
        for o in [op] if op else self._ops_with_rules():
            self._drop_rules(o, {"fail", "crash"})

    def latency(self, op: str, seconds: float) -> None:
        """Every call of ``op`` first sleeps ``seconds`` (0 removes the delay)."""
        if seconds > 0:
            self.redis.hset(self.key("latency"), _checked_op(op), seconds)
        else:
            self.redis.hdel(self.key("latency"), _checked_op(op))

    def enter(self, op: str) -> None:
        """Start a call of ``op``: count it, sleep its latency, apply its "before" rules."""
        self.redis.hincrby(self.key("calls"), _checked_op(op), 1)
        delay = self.redis.hget(self.key("latency"), op)
        if delay:
            time.sleep(float(delay))
        self._apply(op, "before")

    def leave(self, op: str) -> None:
        """End a call of ``op`` whose effect is stored: apply its "after" rules."""
        self._apply(op, "after")

    def _apply(self, op: str, phase: str) -> None:
        # Pauses come first in line like any rule; after a pause is released, the next rule may still fire.
        while (raw := self._take_rule(keys=[self.key("rules", op)], args=[phase])) is not None:
            rule = json.loads(raw)
            if rule["kind"] == "pause":
                self._block(op, int(rule["id"]))
                continue
            if rule["kind"] == "crash" and rule["kill"]:
                os.kill(os.getpid(), signal.SIGKILL)
            if rule["kind"] == "crash":
                raise SimulatedCrash(f"simulated crash {phase} {op}")
            raise _error(op, rule["error"], rule["message"])

    def _block(self, op: str, rule_id: int) -> None:
        paused = self.key("paused", op)
        self.redis.hset(paused, str(rule_id), os.getpid())
        deadline = time.monotonic() + 600
        while int(self.redis.get(self.key("released", op)) or 0) < rule_id:
            if not self.redis.hexists(paused, str(rule_id)):
                raise SimulatedCrash(f"the fake world was reset while a call of {op} was paused")
            if time.monotonic() >= deadline:
                raise SimulatedCrash(f"pause of {op} never released")
            time.sleep(POLL)
        self.redis.hdel(paused, str(rule_id))

    def _add_rule(self, op: str, rule: dict[str, Any], when: str, times: int | None) -> None:
        if when not in PHASES:
            raise ValueError(f"when must be one of {PHASES}, not {when!r}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every call")
        rule_id = self.next_id("rule")
        rule = {**rule, "id": rule_id, "when": when, "times": -1 if times is None else times}
        self.redis.hset(self.key("rules", _checked_op(op)), str(rule_id), json.dumps(rule))

    def _drop_rules(self, op: str, kinds: set[str]) -> None:
        rules_key = self.key("rules", _checked_op(op))
        for rule_id, raw in self.redis.hgetall(rules_key).items():
            if json.loads(raw)["kind"] in kinds:
                self.redis.hdel(rules_key, rule_id)

    def _ops_with_rules(self) -> list[str]:
        start = len(self.key("rules", ""))
        return [k.decode()[start:] for k in self.redis.scan_iter(match=f"{_glob_escape(self.key('rules'))}:*")]


def micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _error(op: str, error: str, message: str | None) -> IntegrationError:
    cls, status = ERRORS[error]
    system = f"fake-{op.split('.')[0]}"
    text = message or f"injected {error} failure of {op}"
    if cls is RateLimited:
        return RateLimited(system, text, retry_after=0.01, status=status)
    return cls(system, text, status=status)


def _checked_op(op: str) -> str:
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}; one of {', '.join(sorted(OPERATIONS))}")
    return op


def _checked_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return kind


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a SIGKILLed child that its parent has not reaped yet (a zombie) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
