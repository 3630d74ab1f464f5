"""The Lua scripts of the Redis backend. Each one makes a check-and-act atomic on the server.

Layout of the keys (``ns`` is the namespace):

* ``ns:e:<key>``: an entry, a hash with fields ``r`` (server run id it was written under),
  ``n`` (its generation names, newline-separated), ``s`` (their stamps, comma-separated),
  ``m`` (``created,ttl,load_time``) and ``p`` (the payload).
* ``ns:t:<tag>``, ``ns:k:<key>``: generation counters, plain integers.
* ``ns:l:ns:e:<key>``: the single-flight lease of an entry (a random token, with an expiry).

Generations are compared as strings: they are integers below 2**53, written by ``INCR`` or by
the client, so equal numbers always have equal decimal strings, and no Lua double rounding can
make two different generations look equal.
"""

from __future__ import annotations

# The scripts (the Redis backend loads every name listed here); NOTICE_MAX is a setting.
__all__ = ["CURRENT", "INVALIDATE", "LEASE", "READ", "RELEASE", "WRITE", "WRITE_THROUGH"]

# A missing generation is *unknown*, never zero: it is created from a fresh random value the
# client sends (``seed``, below 2**52 - 2**20, plus the key's position: exact in a double), so
# no entry stamped before the generation was lost can ever match it.
_FRESH = """
local function fresh(seed, i)
  return string.format('%.0f', tonumber(seed) + i)
end
-- A generation is a decimal integer below 2**53; anything else (a stray SET, a wrong type:
-- MGET and pcall(GET) give nil or an error table) is unknown, like a missing one.
local function valid(v)
  return type(v) == 'string' and #v <= 16 and string.match(v, '^%d+$') ~= nil
end
"""

# Shared prologue: read the current generations of KEYS[first..], creating the missing ones.
_GENS = (
    _FRESH
    + """
local function current(first, seed, gen_ttl, got)
  local n = #KEYS - first + 1
  if n <= 0 then return {} end
  local gens = got or redis.call('MGET', unpack(KEYS, first))  -- got: an MGET already made
  for i = 1, n do
    if not valid(gens[i]) then
      gens[i] = fresh(seed, i)
      redis.call('SET', KEYS[first + i - 1], gens[i], 'PX', gen_ttl)
    end
  end
  return gens
end
"""
)

# Extending a key's expiry to at least ``ms``: PEXPIRE's GT option (Redis >= 7) does it in one
# command (a key without an expiry counts as infinite, so it is left alone); older servers
# refuse the option, and then PTTL decides, as GT would.
_EXTEND = """
local gt_ok = true
local function extend(k, ms)
  if gt_ok then
    local r = redis.pcall('PEXPIRE', k, ms, 'GT')
    if type(r) ~= 'table' or not r.err then return end
    gt_ok = false
  end
  local left = redis.call('PTTL', k)
  if left >= 0 and left < tonumber(ms) then redis.call('PEXPIRE', k, ms) end
end
"""

# Take the single-flight lease ``lease`` with ``token`` for ``ms``: -1 if taken (or already
# ours: a command resent after a lost reply must not wait for its own fill), else the ms the
# holder has left. A caller that finds it taken marks, in the same step, that someone waits
# for its fill (``<lease>:w``, until the lease ends): WRITE and RELEASE publish the fill's
# outcome only when that mark exists, so a fill nobody waits for costs no message in any
# process. A waiter cannot miss the notice: its mark is set before it registers and re-reads
# the entry, and the leader's WRITE either ran before the mark (the re-read finds the entry)
# or sees it (and publishes). The mark lives in the lease's hash slot on a cluster (same
# ``{tag}`` prefix).
_TAKE = """
local function take(lease, token, ms)
  if redis.call('SET', lease, token, 'NX', 'PX', ms) then return -1 end
  if redis.call('GET', lease) == token then return -1 end
  local left = redis.call('PTTL', lease)
  if left > 0 then redis.call('SET', lease .. ':w', '1', 'PX', left) end
  return math.max(left, 0)
end
"""

# READ: the generation-aware read in one round trip; on a miss it also takes the fill's lease
# (when a lease key is given), so a miss costs two round trips in all: this one and WRITE.
# It returns the current generations the caller stamps a fill with (reading them in the same
# atomic step as the entry means a fill can never be stamped newer than what was current when
# the miss was seen) and the entry only if it was written under this server's run id and all
# its stamps are current.
# KEYS[1] entry, KEYS[2] its lease, KEYS[3..] generation names; ARGV[1] run id, ARGV[2] gen ttl
# ms, ARGV[3] fresh seed, ARGV[4] lease ms ('': take no lease), ARGV[5] lease token. The lease
# is named even when not taken: ACLs check every key a script names.
# The reply is kept small because it is the hot path:
#   {0, gen, gen, ...}            a miss, with the current generations to stamp the fill with
#   {3, -1, gen, ...}             a miss, and the lease is ours
#   {3, ms, gen, ...}             a miss, and another caller holds the lease for ms more
#   {1, stamps, meta, payload}    a hit whose names are the ones asked for
#   {2, stamps, meta, payload, names, gen, ...}  a hit on an entry with other names
READ = (
    _GENS
    + _TAKE
    + """
local e = redis.pcall('HMGET', KEYS[1], 'r', 'n', 's', 'm', 'p')
local ok = not e.err and e[1] == ARGV[1] and e[2] and e[3] and e[4] and e[5]
local same = ok and e[2] == table.concat(KEYS, '\\n', 3)
local got
if same and #KEYS > 2 then
  -- The usual hit, checked before any generation is validated: the stored stamps are n
  -- decimal integers joined by n - 1 commas, so the n current values, joined the same way,
  -- can only equal them if each one equals its stamp (a value with a comma in it would make
  -- one comma too many).
  got = redis.call('MGET', unpack(KEYS, 3))
  local all = true
  for i = 1, #KEYS - 2 do
    if not got[i] then all = false break end
  end
  if all and table.concat(got, ',') == e[3] then return {1, e[3], e[4], e[5]} end
end
local gens = current(3, ARGV[3], ARGV[2], got)
local function miss()
  if ARGV[4] == '' then return {0, unpack(gens)} end
  return {3, take(KEYS[2], ARGV[5], ARGV[4]), unpack(gens)}
end
if not ok then return miss() end
local stamps
if same then
  stamps = table.concat(gens, ',')
else
  -- a reader that does not know the entry's tags (cache.get): read the stored names
  local names = {}
  for name in string.gmatch(e[2], '[^\\n]+') do names[#names + 1] = name end
  if #names == 0 then return miss() end
  local cur = redis.call('MGET', unpack(names))
  for i = 1, #names do
    if not cur[i] then return miss() end
  end
  stamps = table.concat(cur, ',')
end
if stamps ~= e[3] then return miss() end
if same then return {1, e[3], e[4], e[5]} end
return {2, e[3], e[4], e[5], e[2], unpack(gens)}
"""
)

# CURRENT: the current generations alone (write-through reads them before the write runs).
# KEYS generation names; ARGV[1] gen ttl ms, ARGV[2] fresh seed.
CURRENT = (
    _GENS
    + """
return current(1, ARGV[2], ARGV[1])
"""
)

# Extend each generation so it outlives the entry stamped with it (else the entry would be
# lost early, which is safe but wasteful); ttl -1 means the entry never expires. ``flags``
# (one "0" or "1" per generation) skips those the writer extended lately (see _kept.py), to
# ``ext`` ms rather than ``retain``; without flags every generation is extended to ``retain``.
_KEEP = (
    _EXTEND
    + """
local function keep(first, retain, ext, flags)
  for i = first, #KEYS do
    if not flags or string.sub(flags, i - first + 1, i - first + 1) == '1' then
      if retain <= 0 then
        redis.call('PERSIST', KEYS[i])
      else
        extend(KEYS[i], ext or retain)
      end
    end
  end
end
local function store(stamps, ext, flags)
  local fields = {'r', ARGV[1], 'n', ARGV[2], 's', stamps, 'm', ARGV[4], 'p', ARGV[5]}
  local done = redis.pcall('HSET', KEYS[1], unpack(fields))
  if type(done) == 'table' and done.err then
    redis.call('DEL', KEYS[1])  -- not a hash: garbage someone else wrote
    redis.call('HSET', KEYS[1], unpack(fields))
  end
  local retain = tonumber(ARGV[6])
  if retain > 0 then redis.call('PEXPIRE', KEYS[1], retain) else redis.call('PERSIST', KEYS[1]) end
  keep(2, retain, ext, flags)
end
"""
)

#: The largest payload a fill notice carries (bytes); a larger one is re-read by each waiter.
NOTICE_MAX = 16384

# WRITE: store a fill only if its stamps are still current. A fill that lost a race with an
# invalidation would be invalid anyway; dropping it keeps a newer entry from being replaced.
# It also ends the fill's single-flight lease and tells waiting processes, in the same step,
# so a waiter woken by the notice always finds the entry (or is given it: NOTICE_MAX).
# KEYS[1] entry, KEYS[2..] its generation names; ARGV[1] run id, ARGV[2] names, ARGV[3]
# stamps, ARGV[4] meta, ARGV[5] payload, ARGV[6] retain ms (<= 0: none), ARGV[7] lease key,
# ARGV[8] lease token, ARGV[9] fill channel, ARGV[10] ms to extend generations to, ARGV[11]
# which of them to extend (see _KEEP). Returns 1 if stored.
WRITE = (
    _KEEP
    + f"local NOTICE_MAX = {NOTICE_MAX}\n"
    + """
local cur = redis.call('MGET', unpack(KEYS, 2))
local ok = 1
for i = 1, #KEYS - 1 do
  if not cur[i] then ok = 0 end
end
if ok == 1 and table.concat(cur, ',') ~= ARGV[3] then ok = 0 end
if ok == 1 then store(ARGV[3], tonumber(ARGV[10]), ARGV[11]) end
if ARGV[8] ~= '' and redis.call('GET', ARGV[7]) == ARGV[8] then
  -- The lease and its waiters' mark in one DEL: 2 deleted means a process waits (see _TAKE);
  -- only then is the fill published: a fill nobody waits for sends no message at all.
  if redis.call('DEL', ARGV[7], ARGV[7] .. ':w') == 2 then
    local notice = 'ok\\n' .. KEYS[1]
    if ok == 1 and #ARGV[5] <= NOTICE_MAX then
      -- The stored entry rides along, so a waiter needs no re-read (a round trip at the end
      -- of every waiting process's stampede). It is what a re-read would return: its stamps
      -- were current when this script ran, after the waiter's read saw the miss. Every
      -- subscribed process receives the notice, hence the size limit.
      notice = notice .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] .. '\\n' .. #ARGV[2] .. '\\n'
        .. ARGV[2] .. ARGV[5]
    end
    redis.call('PUBLISH', ARGV[9], notice)
  end
end
return ok
"""
)

# Increment generations, creating missing ones from the fresh value plus one, then publish the
# new values. Doing both in one script means no reader can see a new generation before its
# message is queued, and no message goes out for an increment that did not happen.
_BUMP = """
local function bump(first, seed, gen_ttl, channel)
  -- seed: see _FRESH (included by every script that includes this one)
  local vals = {}
  for i = first, #KEYS do
    local v = redis.pcall('GET', KEYS[i])
    if not valid(v) then
      -- INCR from the fresh value (not from a Lua number: doubles would print 2e+15)
      redis.call('SET', KEYS[i], fresh(seed, i - first + 1), 'PX', gen_ttl)
    end
    v = redis.call('INCR', KEYS[i])
    -- %.0f: tostring() would print a Lua double such as 3.0195379469013e+15
    vals[#vals + 1] = string.format('%.0f', v)
  end
  redis.call('PUBLISH', channel,
             table.concat(KEYS, '\\n', first) .. '\\n\\n' .. table.concat(vals, ','))
  return vals
end
"""

# INVALIDATE: KEYS generation names; ARGV[1] channel, ARGV[2] gen ttl ms, ARGV[3] fresh seed.
INVALIDATE = (
    _FRESH
    + _BUMP
    + """
return bump(1, ARGV[3], ARGV[2], ARGV[1])
"""
)

# WRITE_THROUGH: invalidate the entry's generations and, only if they still had the values the
# writer read before its write ran, store the writer's value stamped with the new ones. If
# anything else invalidated them meanwhile, another write may be newer than ours: then this
# degrades to a plain invalidation, so two writers finishing out of order can never leave the
# older value valid.
# KEYS[1] entry, KEYS[2..] names; ARGV[1] run id, ARGV[2] names, ARGV[3] expected stamps,
# ARGV[4] meta, ARGV[5] payload, ARGV[6] retain ms, ARGV[7] channel, ARGV[8] gen ttl ms,
# ARGV[9] fresh seed. Returns 1 if stored.
WRITE_THROUGH = (
    _FRESH
    + _KEEP
    + _BUMP
    + """
local cur = redis.call('MGET', unpack(KEYS, 2))
local ok = 1
for i = 1, #KEYS - 1 do
  if not cur[i] then ok = 0 end
end
if ok == 1 and table.concat(cur, ',') ~= ARGV[3] then ok = 0 end
local vals = bump(2, ARGV[9], ARGV[8], ARGV[7])
if ok == 1 then store(table.concat(vals, ',')) end
return ok
"""
)

# RELEASE: a leader whose loader raised gives the lease back (only its own: the token check
# stops a leader whose lease expired from deleting a successor's) and tells the waiters why.
# KEYS[1] lease; ARGV[1] token, ARGV[2] fill channel, ARGV[3] message.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('DEL', KEYS[1], KEYS[1] .. ':w') == 2 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
"""

# LEASE: take the single-flight lease KEYS[1] with token ARGV[1] for ARGV[2] ms (see _TAKE).
# Returns -1 if taken, else the ms its holder has left.
LEASE = (
    _TAKE
    + """
return take(KEYS[1], ARGV[1], ARGV[2])
"""
)
