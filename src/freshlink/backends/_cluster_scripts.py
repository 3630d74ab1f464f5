"""The Lua scripts of the Redis Cluster backend. Each touches the keys of one hash slot only.

Layout: every key is ``{h}name``, where ``name`` is the generation or entry name the cache uses
(``ns:e:<key>``, ``ns:k:<key>``, ``ns:t:<tag>``; see :mod:`freshlink.keyspace`) and ``h`` a
short hash of the part after the kind, so an entry and its own-key generation share one slot
while tags spread over the cluster; an entry's lease (``ns:l:ns:e:<key>``) takes the entry's
``{h}``, so it lives in that slot too. A generation is a string ``<value>:<node identity>``.

Why the node identity: a failover to a replica that missed the last increments brings a tag's
generation *back* to an older value, and an entry stamped with that value (on another node,
untouched by the failover) would be valid again. So every generation records the identity of
the node that last wrote it (its run id, new on every restart, and its replication id, new on
every promotion), and a script that finds a generation written under another identity treats it
as unknown and re-creates it from a fresh random value, exactly like a missing one. The
identity is read with ``INFO`` inside the script, so it is always the node that runs it, even
after a MOVED redirection the client followed.

Entries are checked against every generation in Python: the ones in the entry's slot come back
from the same script that reads the entry, the others from one script per slot in the same
pipelined round. An invalidation that returned before a read started has already changed a
generation the read fetches afterwards, which is all strictness needs; cross-slot atomicity
is not needed for it.
"""

from __future__ import annotations

# One key each (the lease; its waiters' mark shares its slot): the single-server scripts run as
# they are.
from ._scripts import LEASE, RELEASE

__all__ = ["BUMP", "CHECK", "GENS", "LEASE", "READ", "RELEASE", "WRITE"]

_COMMON = """
local function fresh(seed, i)
  return string.format('%.0f', tonumber(seed) + i)
end
local function valid(v)
  return type(v) == 'string' and #v <= 16 and string.match(v, '^%d+$') ~= nil
end
local ME
-- 12 hex digits of the value following `field` in an INFO text (plain find: cheaper than a
-- pattern over the whole text).
local function info12(text, field)
  local at = string.find(text, field, 1, true)
  return string.sub(text, at + #field, at + #field + 11)
end
local function me()
  -- run_id changes on every restart, master_replid on every promotion (failover, failback)
  if not ME then
    ME = info12(redis.call('INFO', 'server'), '\\nrun_id:')
      .. info12(redis.call('INFO', 'replication'), '\\nmaster_replid:')
  end
  return ME
end
-- The current value of generation key k: re-created from the fresh seed when it is missing,
-- garbage, or was last written under another node identity (see the module docstring).
local function gen(k, seed, i, gen_ttl)
  local g = redis.pcall('GET', k)
  if type(g) == 'string' then
    local v, id = string.match(g, '^(%d+):(.*)$')
    if id == me() and valid(v) then return v end
  end
  local v = fresh(seed, i)
  redis.call('SET', k, v .. ':' .. me(), 'PX', gen_ttl)
  return v
end
-- Increment a generation read by gen() (exact: values stay below 2**53), keeping its expiry.
local function incr(k, v)
  local n = string.format('%.0f', tonumber(v) + 1)
  redis.call('SET', k, n .. ':' .. me(), 'KEEPTTL')
  return n
end
local function gens(first, seed, gen_ttl)
  local out = {}
  for i = first, #KEYS do out[#out + 1] = gen(KEYS[i], seed, i, gen_ttl) end
  return out
end
-- Extend a generation so it outlives the entry stamped with it (retain < 0: forever).
local function keep(k, retain)
  if retain < 0 then
    redis.call('PERSIST', k)
  elseif retain > 0 then
    local left = redis.call('PTTL', k)
    if left >= 0 and left < retain then redis.call('PEXPIRE', k, retain) end
  end
end
-- The name a key stands for: the key without its leading {hash tag}.
local function name(k)
  return string.sub(k, string.find(k, '}', 1, true) + 1)
end
"""

# GENS: the current generations of KEYS (all in one slot). ARGV[1] gen ttl ms, ARGV[2] seed.
GENS = (
    _COMMON
    + """
return gens(1, ARGV[2], ARGV[1])
"""
)

# READ: the entry KEYS[1] (fields n, s, m, p, or false when absent or garbage) and the current
# generations KEYS[2..] of the entry's slot, in one step. ARGV[1] gen ttl ms, ARGV[2] seed.
# Returns {n, s, m, p, gen, gen...}; the caller compares the stamps with every generation.
READ = (
    _COMMON
    + """
local out = gens(2, ARGV[2], ARGV[1])
local e = redis.pcall('HMGET', KEYS[1], 'n', 's', 'm', 'p')
if e.err or not (e[1] and e[2] and e[3] and e[4]) then e = {false, false, false, false} end
return {e[1], e[2], e[3], e[4], unpack(out)}
"""
)

# CHECK: are the generations KEYS (one slot) still ARGV[4] (comma-separated)? If so extend them
# to ARGV[3] ms so they outlive the entry being stored on another slot. ARGV[1] gen ttl ms,
# ARGV[2] seed. Returns 1 or 0.
CHECK = (
    _COMMON
    + """
if table.concat(gens(1, ARGV[2], ARGV[1]), ',') ~= ARGV[4] then return 0 end
for i = 1, #KEYS do keep(KEYS[i], tonumber(ARGV[3])) end
return 1
"""
)

# WRITE: store a fill in the entry's slot if the generations there (KEYS[3..]) are still its
# stamps ARGV[5]; generations on other slots are checked by CHECK in the same round. It also
# ends the fill's lease KEYS[2] and tells waiting processes, in the same step, so a waiter woken
# by the notice finds the entry. KEYS[1] entry; ARGV[1] gen ttl ms, ARGV[2] seed, ARGV[3]
# names, ARGV[4] all stamps, ARGV[5] this slot's stamps, ARGV[6] meta, ARGV[7] payload,
# ARGV[8] retain ms (-1: forever), ARGV[9] lease token, ARGV[10] fill channel, ARGV[11] the
# entry key's name for the notice. Returns 1 if stored.
WRITE = (
    _COMMON
    + """
local ok = 0
if table.concat(gens(3, ARGV[2], ARGV[1]), ',') == ARGV[5] then
  ok = 1
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'r', me(), 'n', ARGV[3], 's', ARGV[4], 'm', ARGV[6], 'p', ARGV[7])
  local retain = tonumber(ARGV[8])
  if retain > 0 then redis.call('PEXPIRE', KEYS[1], retain) end
  for i = 3, #KEYS do keep(KEYS[i], retain) end
end
if ARGV[9] ~= '' and redis.call('GET', KEYS[2]) == ARGV[9] then
  -- The lease and its waiters' mark in one DEL; only if a process waits (see _TAKE).
  if redis.call('DEL', KEYS[2], KEYS[2] .. ':w') == 2 then
    redis.call('PUBLISH', ARGV[10], 'ok\\n' .. ARGV[11])
  end
end
return ok
"""
)

# BUMP: increment the generations KEYS (one slot) and publish their names and new values in
# the same step, so no reader sees a new generation before its message is queued. With an
# entry (KEYS[1] non-generation, ARGV[5] ~= ''), this is the write-through's last step: store
# the writer's value stamped with the new generations only if every generation of the entry,
# here and on the other slots already bumped, moved from exactly the value the writer read
# before its write to that value plus one; anything else means another write may be newer.
# ARGV[1] gen ttl ms, ARGV[2] seed, ARGV[3] channel, ARGV[4] retain ms ('' = leave as is);
# with an entry also ARGV[5] names, ARGV[6] all new stamps with this slot's as '?', ARGV[7]
# this slot's expected values, ARGV[8] '1' if the other slots moved as expected, ARGV[9] meta,
# ARGV[10] payload. Returns the new values (then 1 or 0 for stored, with an entry).
BUMP = (
    _COMMON
    + """
local first = 1
if ARGV[5] and ARGV[5] ~= '' then first = 2 end
local old = gens(first, ARGV[2], ARGV[1])
local vals, names = {}, {}
for i = first, #KEYS do
  vals[#vals + 1] = incr(KEYS[i], old[i - first + 1])
  names[#names + 1] = name(KEYS[i])
  if ARGV[4] ~= '' then keep(KEYS[i], tonumber(ARGV[4])) end
end
if #vals > 0 then
  redis.call('PUBLISH', ARGV[3], table.concat(names, '\\n') .. '\\n\\n' .. table.concat(vals, ','))
end
if first == 1 then return vals end
local ok = 0
if ARGV[8] == '1' and table.concat(old, ',') == ARGV[7] then
  ok = 1
  local stamps, j = {}, 0
  for s in string.gmatch(ARGV[6], '[^,]+') do
    if s == '?' then j = j + 1; s = vals[j] end
    stamps[#stamps + 1] = s
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'r', me(), 'n', ARGV[5], 's', table.concat(stamps, ','),
             'm', ARGV[9], 'p', ARGV[10])
  local retain = tonumber(ARGV[4])
  if retain > 0 then redis.call('PEXPIRE', KEYS[1], retain) end
end
vals[#vals + 1] = ok
return vals
"""
)
