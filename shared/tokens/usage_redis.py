"""Usage tallies in Redis: added in the rate limit's own round trip, drained into batches.

With the rate-limit counters in Redis, an accepted request's tally goes there too, in the same
Lua script that increments the token's rate-limit window: one round trip, and a web process
killed at any moment has lost nothing (its requests are in Redis before they are answered).

Keys, under the rate-limit key prefix (so deployments sharing a Redis stay apart):

- `<prefix>:usage:live` — the hash requests add to (fields below; no expiry: it must never be
  evicted, so run Redis with `maxmemory-policy noeviction` or a `volatile-*` policy);
- `<prefix>:usage:batch:<n>` — a live hash renamed to batch `n`, waiting to be applied;
- `<prefix>:usage:pending` — the numbers of the batches waiting (a sorted set);
- `<prefix>:usage:meta` — `seq`, the last batch number, and `epoch`, a random name of this
  Redis's series of batches (gone with the data if Redis is wiped, so numbering restarts under a
  new name instead of colliding with the marks of the old one);
- `<prefix>:usage:turn` — set for one flush interval by the process whose turn it is to drain.

Draining, by whichever process holds the turn (every web process tries each interval; the
worker's sweep too):

1. one script renames `live` to `batch:<seq+1>` and adds the number to `pending`; the requests
   that follow start a new `live` hash. A rename is atomic: a request's tally is wholly in one batch;
2. for each pending number in order: read the batch, apply it in one database transaction that
   also moves this source's mark to the number (shared/usage_batches.py), then delete the batch
   and its pending entry together (MULTI).

A crash anywhere loses nothing and counts nothing twice: before the commit, the batch is still
pending and the next drainer applies it; after the commit and before the delete, the next drainer
finds the mark at that number, writes nothing, and deletes the batch. Two drainers on one batch
(a turn that ran out while its holder was slow) queue on the mark's row and the second writes
nothing. Batches are applied in order and stop at the first that fails (database down), so a
later batch can never move the mark past an earlier one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import hiredis
from limits.storage import RedisSentinelStorage, RedisStorage, Storage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from shared.core.held import Held
from shared.tokens.usage_tally import CanaryTrip, NetworkUse, ScopeUse, Tally, TokenUse

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS: the rate-limit window, the live tally, the address's failure window. ARGV: window length,
# limit, token id, organization id, time (µs since the epoch), address, UTC day, network,
# "scope|method" or "", the failure limit.
# Returns {window count, the token's count in the live tally (0 when over the limit)}, or {-1, 0}
# when the address has failed too often (then nothing is counted).
_HIT_AND_TALLY = """
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[10]) then return {-1, 0} end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if count > tonumber(ARGV[2]) then return {count, 0} end
local h, t, now = KEYS[2], ARGV[3], tonumber(ARGV[5])
local n = redis.call('HINCRBY', h, 't|' .. t, 1)
local last = redis.call('HGET', h, 'tl|' .. t)
if not last or now >= tonumber(last) then
  redis.call('HSET', h, 'tl|' .. t, ARGV[5], 'ti|' .. t, ARGV[6], 'to|' .. t, ARGV[4])
end
redis.call('HINCRBY', h, 'd|' .. t .. '|' .. ARGV[7], 1)
local net = t .. '|' .. ARGV[8]
if redis.call('HINCRBY', h, 'n|' .. net, 1) == 1 then
  redis.call('HSET', h, 'nf|' .. net, ARGV[5], 'nl|' .. net, ARGV[5], 'np|' .. net, n, 'ni|' .. net, ARGV[6],
             'no|' .. net, ARGV[4])
elseif now > tonumber(redis.call('HGET', h, 'nl|' .. net)) then
  redis.call('HSET', h, 'nl|' .. net, ARGV[5])
end
if ARGV[9] ~= '' then
  local s = t .. '|' .. ARGV[9]
  redis.call('HINCRBY', h, 's|' .. s, 1)
  local seen = redis.call('HGET', h, 'sl|' .. s)
  if not seen or now > tonumber(seen) then redis.call('HSET', h, 'sl|' .. s, ARGV[5]) end
end
return {count, n}
"""

# KEYS: live, meta, pending. ARGV: the batch key prefix, a new epoch name (used if none yet).
# Returns {epoch, pending batch numbers in order}.
_CUT = """
redis.call('HSETNX', KEYS[2], 'epoch', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local n = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('RENAME', KEYS[1], ARGV[1] .. n)
  redis.call('ZADD', KEYS[3], n, n)
end
return {redis.call('HGET', KEYS[2], 'epoch'), redis.call('ZRANGE', KEYS[3], 0, -1)}
"""


def supports(storage: Storage) -> bool:
    """Whether tallies can ride with this rate-limit storage (one Redis; not a cluster, whose
    keys of one script must share a slot)."""
    return type(storage) in (RedisStorage, RedisSentinelStorage)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _moment(micros: bytes | str) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


class RedisTallies:
    def __init__(self, storage: RedisStorage, prefix: str):
        self.client = storage.get_connection()
        self.live = f"{prefix}:usage:live"
        self.batch_prefix = f"{prefix}:usage:batch:"
        self.pending_key = f"{prefix}:usage:pending"
        self.meta = f"{prefix}:usage:meta"
        self.turn = f"{prefix}:usage:turn"
        self.prefix = prefix
        self._hit_and_tally = self.client.register_script(_HIT_AND_TALLY)
        self._cut = self.client.register_script(_CUT)
        # The request path's script runs on a connection of its own, sent as one packed EVALSHA:
        # redis-py's client and pool cost more per call than the round trip (bench/README.md).
        self._pool = self.client.connection_pool
        self._held = Held(self._pool.get_connection)

    # ------------------------------------------------------------------ the request path

    def hit_and_add(self, window_key: str, period: int, limit: int, failure_key: str, failure_limit: int,
                    token_id: int, organization_id: int, at: datetime, ip: str, network: str,
                    right: tuple[str, str] | None) -> tuple[int, int]:
        """Unless the address's failure window is full, increment the rate-limit window and, when
        within the limit, tally the request: one round trip. Returns (window count, the token's
        count in the live tally), or (-1, 0) for an address refused for its failures."""
        keys = [window_key, self.live, failure_key]
        args = [period, limit, token_id, organization_id, _micros(at), ip, at.date().isoformat(), network,
                f"{right[0]}|{right[1]}" if right else "", failure_limit]
        try:
            count, pending = self._evalsha(keys, args)
        except NoScriptError:  # Redis restarted or its scripts were flushed: load it and run it
            count, pending = self._hit_and_tally(keys=keys, args=args)
        return int(count), int(pending)

    def _evalsha(self, keys: list, args: list):
        try:
            return self._run_held(keys, args)
        except RedisConnectionError:
            # The server closed the connection (a restart, an idle timeout) and the script never ran
            # on it: once more, as redis-py's own retry would, after giving the other held ones back
            # to the pool, which checks each one it hands out. A timeout is not retried (the script
            # may have run); it answers 503 like Redis being down.
            for connection in self._held.take_all():
                self._pool.release(connection)
            return self._run_held(keys, args)

    def _run_held(self, keys: list, args: list):
        connection = self._held.take()
        try:
            # hiredis packs the arguments as they are; redis-py's packer first copies them in Python.
            connection.send_packed_command(
                [hiredis.pack_command(("EVALSHA", self._hit_and_tally.sha, len(keys), *keys, *args))],
                check_health=False)
            reply = connection.read_response()
        except ResponseError:
            self._held.give_back(connection)  # a whole reply was read (NOSCRIPT): ready for the next
            raise
        except BaseException:
            self._pool.release(connection)  # redis-py disconnected it; the pool reconnects it
            raise
        self._held.give_back(connection)
        return reply

    def add_trip(self, trip: CanaryTrip) -> None:
        self.client.hset(self.live, f"c|{trip.token_id}|{uuid.uuid4().hex}", json.dumps(
            {"at": _micros(trip.at), "ip": trip.ip, "user_agent": trip.user_agent, "path": trip.path}))

    def pending(self, token_id: int) -> int:
        return int(self.client.hget(self.live, f"t|{token_id}") or 0)

    # ------------------------------------------------------------------ draining

    def take_turn(self, owner: str, milliseconds: int) -> bool:
        """True when this process may drain now (nobody else did within the interval)."""
        return bool(self.client.set(self.turn, owner, nx=True, px=max(1, milliseconds)))

    def cut(self) -> tuple[str, list[int]]:
        """Close the live tally as the next batch; the epoch and every pending batch number, in order."""
        epoch, numbers = self._cut(keys=[self.live, self.meta, self.pending_key],
                                   args=[self.batch_prefix, uuid.uuid4().hex])
        return _text(epoch), sorted(int(n) for n in numbers)

    def read(self, number: int) -> Tally:
        return decode(self.client.hgetall(f"{self.batch_prefix}{number}"))

    def done(self, number: int) -> None:
        """Batch `number` is in the database: forget it (both keys at once)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self.batch_prefix}{number}")
            pipe.zrem(self.pending_key, number)
            pipe.execute()

    def source(self, epoch: str) -> str:
        return f"redis:{self.prefix}:{epoch}"[:120]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode(fields: dict) -> Tally:
    """A Redis tally hash as a Tally."""
    values = {_text(name): _text(value) for name, value in fields.items()}
    tally = Tally()
    for name, value in values.items():
        kind, _, rest = name.partition("|")
        if kind == "t":
            token_id = int(rest)
            tally.tokens[token_id] = TokenUse(int(values[f"to|{rest}"]), int(value),
                                              _moment(values[f"tl|{rest}"]), values[f"ti|{rest}"])
    for name, value in values.items():
        kind, _, rest = name.partition("|")
        if kind == "d":
            token, _, day = rest.partition("|")
            tally.days[(int(token), date.fromisoformat(day))] = [tally.tokens[int(token)].organization_id,
                                                                 int(value)]
        elif kind == "n":
            token, _, network = rest.partition("|")
            tally.networks[(int(token), network)] = NetworkUse(
                int(values[f"no|{rest}"]), int(value), _moment(values[f"nf|{rest}"]),
                _moment(values[f"nl|{rest}"]), values[f"ni|{rest}"], int(values[f"np|{rest}"]))
        elif kind == "s":
            token, _, right = rest.partition("|")
            scope, _, method = right.rpartition("|")
            tally.scopes[(int(token), scope, method)] = ScopeUse(int(value), _moment(values[f"sl|{rest}"]))
        elif kind == "c":
            token = rest.partition("|")[0]
            trip = json.loads(value)
            tally.trips.append(CanaryTrip(int(token), _moment(trip["at"]), trip["ip"], trip["user_agent"],
                                          trip["path"]))
    tally.trips.sort(key=lambda trip: trip.at)
    return tally
