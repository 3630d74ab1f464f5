"""The Lua scripts of the Redis backend. Each one makes a check-and-act atomic on the server.

Layout of the keys (``ns`` is the namespace):

* ``ns:e:<key>``: an entry, a string: ``E<run id>\\n<len>\\n<names><stamps>\\n<meta>\\n<payload>``
  (the server run id it was written under; its generation names, newline-separated, and their
  byte length; their stamps, comma-separated; ``created,ttl,load_time``; the payload). One
  string, so a read fetches it with its generations in one ``MGET``, and a fill stores it with
  its expiry in one ``SET``. While a miss is being filled the same key holds the fill's
  single-flight lease instead: ``L<token>``, with a ``+`` appended once a process waits for it.
* ``ns:t:<tag>``, ``ns:k:<key>``: generation counters, plain integers.
* ``ns:l:ns:e:<key>``: the lease of a refresh (an entry that is still valid is being replaced,
  so the lease cannot take its place): a random token, with ``<lease>:w`` marking a waiter.

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
-- got: an MGET already made of KEYS[first - off..] (the entry and its generations, say).
local function current(first, seed, gen_ttl, got, off)
  local n = #KEYS - first + 1
  if n <= 0 then return {} end
  got = got or redis.call('MGET', unpack(KEYS, first))
  off = off or 0
  local gens = {}
  for i = 1, n do
    local g = got[i + off]
    if not valid(g) then
      g = fresh(seed, i)
      redis.call('SET', KEYS[first + i - 1], g, 'PX', gen_ttl)
    end
    gens[i] = g
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

# Take the refresh lease ``lease`` with ``token`` for ``ms``: -1 if taken (or already ours: a
# command resent after a lost reply must not wait for its own fill), else the ms the holder
# has left. A caller that finds it taken marks, in the same step, that someone waits for its
# fill (``<lease>:w``, until the lease ends): WRITE and RELEASE publish the fill's outcome only
# when that mark exists, so a fill nobody waits for costs no message in any process. A waiter
# cannot miss the notice: its mark is set before it registers and re-reads the entry, and the
# leader's WRITE either ran before the mark (the re-read finds the entry) or sees it (and
# publishes). The mark lives in the lease's hash slot on a cluster (same ``{tag}`` prefix).
_TAKE = """
local function take(lease, token, ms)
  if redis.call('SET', lease, token, 'NX', 'PX', ms) then return -1 end
  if redis.call('GET', lease) == token then return -1 end
  local left = redis.call('PTTL', lease)
  if left > 0 then redis.call('SET', lease .. ':w', '1', 'PX', left) end
  return math.max(left, 0)
end
"""

# The lease of a miss lives in the entry's own key, in place of the entry (absent, or no longer
# valid: nobody can be served it). Taking it is the one SET that would otherwise take a lease
# key, and the fill that stores the entry ends it by overwriting it, so a miss needs no command
# for the lease of its own. ``v`` is what the entry key holds (from the read's MGET). Returns
# as _TAKE does; a waiter's mark is a ``+`` appended to the lease (APPEND keeps its expiry), so
# the WRITE that reads the lease to check it is its own also learns whether anyone waits.
_LEASES = """
local function is_lease(v)
  return type(v) == 'string' and string.sub(v, 1, 1) == 'L'
end
local function own_lease(v, token)
  return token ~= '' and (v == 'L' .. token or v == 'L' .. token .. '+')
end
"""
_PLACE = (
    _LEASES
    + """
local function place(e, v, token, ms)
  if is_lease(v) then
    if own_lease(v, token) then return -1 end
    local left = redis.call('PTTL', e)
    if left > 0 then
      if string.sub(v, -1) ~= '+' then redis.call('APPEND', e, '+') end
      return left
    end
    -- a lease without an expiry is garbage someone wrote: taken over below
  end
  redis.call('SET', e, 'L' .. token, 'PX', ms)
  return -1
end
"""
)

# READ: the generation-aware read in one round trip; on a miss it also takes the fill's lease
# (when a lease ms is given), so a miss costs two round trips in all: this one and WRITE.
# It returns the current generations the caller stamps a fill with (reading them in the same
# atomic step as the entry means a fill can never be stamped newer than what was current when
# the miss was seen) and the entry only if it was written under this server's run id, for the
# names asked, and all its stamps are current.
# KEYS[1] entry, KEYS[2..] generation names; ARGV[1] run id, ARGV[2] ms a generation created
# here lives, ARGV[3] fresh seed, ARGV[4] lease ms ('': take no lease), ARGV[5] lease token.
# The reply is kept small because it is the hot path:
#   the stored string             a hit whose names are the ones asked for
#   {0, gen, gen, ...}            a miss, with the current generations to stamp the fill with
#   {3, -1, gen, ...}             a miss, and the lease is ours
#   {3, ms, gen, ...}             a miss, and another caller holds the lease for ms more
#   {2, stored string, gen, ...}  a hit on an entry with other names
READ = (
    _GENS
    + _PLACE
    + """
local got = redis.call('MGET', unpack(KEYS))
local v = got[1]
local stored = type(v) == 'string' and string.sub(v, 1, 1) == 'E'
if stored then
  -- The usual hit, checked before any generation is validated: one comparison of the
  -- entry's head with what it must be. Stamps are decimal integers joined by commas, so the
  -- current values joined the same way can only equal them if each equals its stamp (a
  -- value with a comma or a newline in it would make one separator too many).
  local all = true
  for i = 2, #KEYS do
    if not got[i] then all = false break end
  end
  if all then
    local names = table.concat(KEYS, '\\n', 2)
    local head = 'E' .. ARGV[1] .. '\\n' .. #names .. '\\n' .. names
      .. table.concat(got, ',', 2) .. '\\n'
    if string.sub(v, 1, #head) == head then return v end
  end
end
local gens = current(2, ARGV[3], ARGV[2], got, 1)
local function miss()
  if ARGV[4] == '' then return {0, unpack(gens)} end
  return {3, place(KEYS[1], v, ARGV[5], ARGV[4]), unpack(gens)}
end
local run = 'E' .. ARGV[1] .. '\\n'
if not stored then return miss() end
if string.sub(v, 1, #run) ~= run then
  -- Written under another server identity: from before a restart, or, if this caller has
  -- not yet learned a new one, valid for everyone else. Not ours to replace with a lease:
  -- the caller takes a refresh's lease if it loads (LEASE leaves an entry in place).
  return {0, unpack(gens)}
end
-- Another writer's names (a reader that does not know the entry's tags: cache.get): check
-- the stamps of the names the entry was stored with.
local at = string.find(v, '\\n', #run + 1, true)
local size = at and tonumber(string.sub(v, #run + 1, at - 1))
if not size or size < 1 or size % 1 ~= 0 then return miss() end
local stamps_at = at + size + 1
local stamps_end = string.find(v, '\\n', stamps_at, true)
if not stamps_end then return miss() end
local stored_names = string.sub(v, at + 1, at + size)
if stored_names == table.concat(KEYS, '\\n', 2) then return miss() end  -- stale: same names
local names = {}
for name in string.gmatch(stored_names, '[^\\n]+') do
  names[#names + 1] = name
end
if #names == 0 then return miss() end
local cur = redis.call('MGET', unpack(names))
for i = 1, #names do
  if not cur[i] then return miss() end
end
if table.concat(cur, ',') ~= string.sub(v, stamps_at, stamps_end - 1) then return miss() end
return {2, v, unpack(gens)}
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

#: The largest entry a fill notice carries (bytes); a larger one is re-read by each waiter.
NOTICE_MAX = 16384

# Extend each generation so it outlives the entry stamped with it (else the entry would be
# lost early, which is safe but wasteful); ttl -1 means the entry never expires. ``flags``
# (one "0" or "1" per generation) skips those the writer extended lately (see _kept.py), to
# ``ext`` ms rather than ``retain``; without flags every generation is extended to ``retain``.
_KEEP = (
    _EXTEND
    + _LEASES
    + f"local NOTICE_MAX = {NOTICE_MAX}\n"
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
-- The entry's string (see the module docstring), stamped with ``stamps``.
local function entry(stamps)
  return 'E' .. ARGV[1] .. '\\n' .. #ARGV[2] .. '\\n' .. ARGV[2] .. stamps .. '\\n' .. ARGV[4]
    .. '\\n' .. ARGV[5]
end
-- Store the entry (in place of whatever the key held: a lease, an old entry, garbage), keep
-- its generations, and return it.
local function store(stamps, ext, flags)
  local v = entry(stamps)
  local retain = tonumber(ARGV[6])
  if retain > 0 then
    redis.call('SET', KEYS[1], v, 'PX', retain)
  else
    redis.call('SET', KEYS[1], v)
  end
  keep(2, retain, ext, flags)
  return v
end
-- Tell the processes waiting for the fill of KEYS[1]; the stored entry ``v`` rides along
-- (up to NOTICE_MAX bytes) so a waiter needs no re-read, a round trip at the end of every
-- waiting process's stampede. A waiter takes it only if it is stamped with the generations
-- its own read saw (a notice delivered late may predate that read: see _steps._carried).
-- Every subscribed process receives the notice, hence the size limit.
local function notify(channel, v)
  local notice = 'ok\\n' .. KEYS[1]
  if v and #v <= NOTICE_MAX then notice = notice .. '\\n' .. v end
  redis.call('PUBLISH', channel, notice)
end
"""
)

# WRITE: store a fill only if its stamps are still current. A fill that lost a race with an
# invalidation would be invalid anyway; dropping it keeps a newer entry from being replaced.
# It also ends the fill's single-flight lease and tells waiting processes, in the same step,
# so a waiter woken by the notice always finds the entry (or is given it: NOTICE_MAX).
# KEYS[1] entry, KEYS[2..] its generation names; ARGV[1] run id, ARGV[2] names, ARGV[3]
# stamps, ARGV[4] meta, ARGV[5] payload, ARGV[6] retain ms (<= 0: none), ARGV[7] refresh lease
# key, ARGV[8] lease token (held in the entry key or the refresh lease key; '': none),
# ARGV[9] fill channel, ARGV[10] ms to extend generations to, ARGV[11] which of them to
# extend (see _KEEP). Returns 1 if stored.
WRITE = (
    _KEEP
    + """
local cur = redis.call('MGET', unpack(KEYS))
local prev = cur[1]
local ok = 1
for i = 2, #KEYS do
  if not cur[i] then ok = 0 end
end
if ok == 1 and table.concat(cur, ',', 2) ~= ARGV[3] then ok = 0 end
local v = ok == 1 and store(ARGV[3], tonumber(ARGV[10]), ARGV[11])
-- A miss's lease (in the entry's key) ends here: overwritten by the entry, or deleted if this
-- fill was not stored and the lease is its own. Its waiters are told either way: the leader's
-- and, when this entry replaced another fill's lease, that one's.
local mine = own_lease(prev, ARGV[8])
local ended = is_lease(prev) and (ok == 1 or mine)
if ended and ok == 0 then redis.call('DEL', KEYS[1]) end
local tell = ended and string.sub(prev, -1) == '+'
if not mine and ARGV[8] ~= '' and redis.call('GET', ARGV[7]) == ARGV[8] then
  -- A refresh's lease and its waiters' mark in one DEL: 2 deleted means a process waits
  -- (see _TAKE). Only then is the fill published: one nobody waits for sends no message.
  if redis.call('DEL', ARGV[7], ARGV[7] .. ':w') == 2 then tell = true end
end
if tell then notify(ARGV[9], v) end
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
# ARGV[9] fresh seed, ARGV[10] fill channel (a miss's lease the value replaces has waiters).
# Returns 1 if stored.
WRITE_THROUGH = (
    _FRESH
    + _KEEP
    + _BUMP
    + """
local cur = redis.call('MGET', unpack(KEYS))
local ok = 1
for i = 2, #KEYS do
  if not cur[i] then ok = 0 end
end
if ok == 1 and table.concat(cur, ',', 2) ~= ARGV[3] then ok = 0 end
local vals = bump(2, ARGV[9], ARGV[8], ARGV[7])
if ok == 1 then
  local v = store(table.concat(vals, ','))
  -- it took the place of a miss's lease: that fill will not be stored (its stamps are now
  -- old), so its waiters are told here
  if is_lease(cur[1]) and string.sub(cur[1], -1) == '+' then notify(ARGV[10], v) end
end
return ok
"""
)

# RELEASE: a leader whose loader raised gives the lease back (only its own: the token check
# stops a leader whose lease expired from deleting a successor's) and tells the waiters why.
# KEYS[1] the refresh lease key, KEYS[2] (optional) the entry key, which holds a miss's lease
# (see _PLACE); ARGV[1] token, ARGV[2] fill channel, ARGV[3] message. Returns 1 if ours.
RELEASE = (
    _LEASES
    + """
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  if redis.call('DEL', KEYS[1], KEYS[1] .. ':w') == 2 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
local v = KEYS[2] and redis.pcall('GET', KEYS[2])
if own_lease(v, ARGV[1]) then
  redis.call('DEL', KEYS[2])
  if string.sub(v, -1) == '+' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
"""
)

# LEASE: take the single-flight lease of a fill with token ARGV[1] for ARGV[2] ms. KEYS[1] is
# the refresh lease key, KEYS[2] (optional) the entry key: while the entry key holds no entry
# (nothing, or a miss's lease) the lease is the one a miss takes (_PLACE), so a read's miss
# and this call single-flight each other; otherwise it is a refresh's (_TAKE). Returns -1 if
# taken, else the ms its holder has left.
LEASE = (
    _TAKE
    + _PLACE
    + """
if KEYS[2] then
  local v = redis.pcall('GET', KEYS[2])
  if not v or is_lease(v) then return place(KEYS[2], v, ARGV[1], ARGV[2]) end
end
return take(KEYS[1], ARGV[1], ARGV[2])
"""
)
