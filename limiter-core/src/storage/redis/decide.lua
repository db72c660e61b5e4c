-- limiter: decides a batch of limits all-or-nothing, in one call.
--
-- This is src/strategy.rs (State::decide, State::refund, State::expires_at) and the memory
-- store's batch (MemoryStore::decide_now) line by line, with the floating-point operations in the
-- same order, so Redis and the memory store agree on every decision. Every number is an
-- integer below 2^53 (microseconds), exact in a Lua double; numbers are written back with
-- %.0f because Lua's default formatting would round them to 14 digits.
--
-- KEYS[i]  counter key of limit i (several limits may share one key)
-- ARGV[1]  mode: "decide" | "peek" | "deny" | "refund" (the fast modes are scripts of their
--          own: fixed.lua, gcra.lua, sliding.lua)
--            decide: the all-or-nothing batch
--            peek:   stats only, nothing written
--            deny:   the batch is already denied elsewhere (another cluster slot): peek
--                    every limit, and let the elastic limits that deny it record the hit
--            refund: give back each limit's cost, then report peeked stats (not written)
--            swap:R  give back the first R limits' costs, then decide the others as "decide"
--                    does (a charge made before routing traded for the route's own
--                    limits); only the decided limits are reported
-- ARGV[2]  now in microseconds, or "" to read the server's TIME, or "-N" for N microseconds
--          before the server's TIME (a refund's charge time)
-- ARGV[3]  grace in milliseconds added to every TTL (TTLs only collect garbage)
-- ARGV[4 + 4(i-1) ..] per limit: strategy code, amount n, period p (µs), cost
--   strategy codes: 0 fixed-window, 1 fixed-window-elastic-expiry, 2 moving-window,
--                   3 moving-window-elastic, 4 sliding-window-counter, 5 gcra
-- Returns one string of 4 integers per limit, all separated by single spaces: admitted (1/0),
-- remaining, reset (µs), retry-after (µs, -1 for none). One string, not an array of integers:
-- the client decodes it several times faster.

-- `x + 0` turns an argument into a number with one strtod; tonumber(x) runs two (it checks,
-- then converts), a cost that shows on every call. The arguments are plain integers.
local mode = ARGV[1]
local t
local now = ARGV[2]
if now == '' or now:byte(1) == 45 then
  local time = redis.call('TIME')
  t = tonumber(time[1]) * 1000000 + tonumber(time[2])
  -- "-ago": a refund's charge was made that long before the server's now.
  if now ~= '' then t = math.max(t + now, 0) end
else
  t = now + 0
end
local grace = ARGV[3] + 0

-- Fixed-window limits only (one, or a route's and the application's) when the script reads
-- the time itself (`time=server`; with the caller's clock they take fixed.lua) are answered
-- here, before the general machinery below is built: that setup (closures, tables)
-- and its TYPE calls would cost more than the decision itself, so this path makes no closure,
-- and tables only for a second limit. Same arithmetic, reply and writes as decide() and store() for keys holding
-- a 'w' state or nothing, all distinct; anything else (another strategy's value, a list, a
-- string of someone else's, a key named twice) takes the general path. Every key is read
-- before any is written, so a denied batch writes nothing: the general path's rollback would
-- restore just what was read. Its numbers stay below 2^53, so '%d' writes what int() would,
-- at a third of the cost. Limit i's arguments: code ARGV[4i], n, p and cost after it.
if mode == 'decide' and ARGV[4] == '0' then
  local nkeys = #KEYS
  local short = nkeys <= 8
  for i = 2, nkeys do
    if not short then break end
    if ARGV[4 * i] ~= '0' then short = false end
    for j = 1, i - 1 do
      if KEYS[j] == KEYS[i] then short = false end
    end
  end
  -- Per limit: window start, count in it, n, p, cost; the first limit's in locals, the
  -- others' in a table (a lone limit, the most common request, then allocates none).
  local start1, count1, n1, p1, cost1
  local v
  local all = true
  for i = 1, nkeys do
    if not short then break end
    local value = redis.pcall('GET', KEYS[i])
    local s, c
    if type(value) == 'string' then s, c = string.match(value, '^w:(%d+):(%d+)$') end
    local n, p, cost = ARGV[4 * i + 1] + 0, ARGV[4 * i + 2] + 0, ARGV[4 * i + 3] + 0
    if n >= 9007199254740992 or (value and not s) then
      short = false
    else
      -- idiv(t, p) * p, inline.
      local q = math.floor(t / p)
      if q * p > t then q = q - 1 elseif (q + 1) * p <= t then q = q + 1 end
      local start = q * p
      -- A window that has ended counts as a fresh one; a later one (this request dated
      -- before it) is the one it counts in, as in decide().
      local count = 0
      if s and s + p > t then start, count = s + 0, c + 0 end
      if count + cost > n then all = false end
      if i == 1 then
        start1, count1, n1, p1, cost1 = start, count, n, p, cost
      else
        v = v or {}
        local b = 5 * i
        v[b - 4], v[b - 3], v[b - 2], v[b - 1], v[b] = start, count, n, p, cost
      end
    end
  end
  if short then
    local out
    for i = 1, nkeys do
      local start, count, n, p, cost = start1, count1, n1, p1, cost1
      if i > 1 then
        local b = 5 * i
        start, count, n, p, cost = v[b - 4], v[b - 3], v[b - 2], v[b - 1], v[b]
      end
      local reset = start + p
      local admitted, retry = 1, -1
      if count + cost > n then
        admitted = 0
        if cost > n then retry = p else retry = reset - t end
      elseif all then
        count = count + cost
        -- store(): the window ends after t, so the key is always written; the TTL is
        -- idiv(reset - t + 999, 1000) + grace.
        local left = reset - t + 999
        local ms = math.floor(left / 1000)
        if ms * 1000 > left then ms = ms - 1 elseif (ms + 1) * 1000 <= left then ms = ms + 1 end
        redis.call('SET', KEYS[i], string.format('w:%d:%d', start, count), 'PX', ms + grace)
      end
      -- Limits that would admit a denied batch report their count as peeked, uncharged.
      local remaining = 0
      if n > count then remaining = n - count end
      local reply = string.format('%d %d %d %d', admitted, remaining, reset, retry)
      if nkeys == 1 then return reply end
      out = out or {}
      out[i] = reply
    end
    return table.concat(out, ' ')
  end
end

local FIXED, FIXED_ELASTIC, MOVING, MOVING_ELASTIC, SLIDING, GCRA = 0, 1, 2, 3, 4, 5

-- floor(a / b) for non-negative integers: the double quotient may round up to the next
-- integer, so correct it with exact products.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function int(x)
  return string.format('%.0f', x)
end

local function sat_sub(a, b)
  if a > b then return a - b end
  return 0
end

-- Per-key state, loaded once per call and shared by every limit on that key (as in memory).
--   {k='empty'} {k='w', start, count} {k='e', expires, count, start}
--   {k='s', start, current, previous} {k='g', tat, drained} {k='log', foreign}
-- A 'log' lives in the Redis list itself; `foreign` marks a key that still holds another
-- strategy's value, which counts as an empty log until the first write replaces it.
local cache = {}
local dirty = {}
local period_of = {}

-- `s`: the strategy asking; a moving window's key is usually a list.
local function load(key, s)
  local st = cache[key]
  if st then return st end
  -- A string state (or none) is read with one GET; a list, or anything else, is found by
  -- its TYPE (a GET on a list fails, which costs more than asking).
  local v, kind
  if s == MOVING or s == MOVING_ELASTIC then
    kind = redis.call('TYPE', key)['ok']
    if kind == 'string' then v = redis.call('GET', key) end
  else
    v = redis.pcall('GET', key)
    if type(v) == 'string' then
      kind = 'string'
    elseif v then
      kind = redis.call('TYPE', key)['ok']
    end
  end
  if kind == 'list' then
    st = { k = 'log' }
  elseif kind == 'string' then
    local tag, a, b, c = string.match(v, '^(%a):(%d+):?(%d*):?(%d*)$')
    if tag == 'w' then
      st = { k = 'w', start = tonumber(a), count = tonumber(b) }
    elseif tag == 'e' then
      -- `start` (when the window began) came later: a state written without it takes any
      -- refund, as before.
      st = { k = 'e', expires = tonumber(a), count = tonumber(b), start = tonumber(c) or 0 }
    elseif tag == 's' then
      st = { k = 's', start = tonumber(a), current = tonumber(b), previous = tonumber(c) }
    elseif tag == 'g' then
      -- `drained` came later: a state written without it takes any refund, as before.
      st = { k = 'g', tat = tonumber(a), drained = tonumber(b) or 0 }
    else
      st = { k = 'empty', foreign = true }
    end
    st.foreign = true
  else
    -- Nothing, or a type no strategy writes (a hash, a set...): a fresh key, replaced by the
    -- first write like any other strategy's state.
    st = { k = 'empty', foreign = kind ~= nil and kind ~= 'none' }
  end
  cache[key] = st
  return st
end

local function replace(key, st, fresh)
  fresh.foreign = st.foreign or (st.k == 'log')
  cache[key] = fresh
  return fresh
end

-- Leading log entries that have left the window (State::decide pops them from the front).
local function log_view(key, st, p)
  if st.foreign then return 0, 0 end
  local len = redis.call('LLEN', key)
  local skip = 0
  while skip < len and tonumber(redis.call('LINDEX', key, skip)) + p <= t do
    skip = skip + 1
  end
  return len, skip
end

local function sliding_weighted(previous, p, elapsed)
  local weight = (p - elapsed) / p
  return math.floor(previous * weight)
end

-- The first elapsed time e in 0..p with sliding_weighted(count, p, e) < bound: the closed
-- form, a microsecond off now and then, is the first guess, from which a search on the
-- decision's own arithmetic steps to the crossing (strategy.rs, line by line).
local function first_elapsed_below(count, bound, p)
  local function below(e) return sliding_weighted(count, p, e) < bound end
  if below(0) then return 0 end
  local pf = p
  local x = pf - (bound * pf) / count
  local guess = 0
  if x >= 0 then guess = math.min(math.floor(x) + 1, p) end
  -- lo denies and hi admits, all along: a few steps from the guess, then bisection.
  local lo, hi, probe = 0, p, guess
  for _ = 1, 3 do
    if probe <= lo or probe >= hi then break end
    if below(probe) then
      hi, probe = probe, probe - 1
    else
      lo, probe = probe, probe + 1
    end
  end
  while hi - lo > 1 do
    local mid = lo + math.floor((hi - lo) / 2)
    if below(mid) then hi = mid else lo = mid end
  end
  return hi
end

local function sliding_retry(previous, current, n, cost, p, elapsed)
  local room = n - current - cost
  if room >= 0 then
    local crossing = first_elapsed_below(previous, room + 1, p)
    return math.max(crossing, elapsed + 1) - elapsed
  end
  local crossing = first_elapsed_below(current, n - cost + 1, p)
  return p - elapsed + crossing
end

-- State::decide. Returns admitted (bool), remaining, reset, retry (-1 for none). `hit` is
-- false (Action::Peek), 'charge' (Action::Charge: an admitted request only) or true
-- (Action::Hit: the elastic strategies record a denied one too).
local function decide(key, s, n, p, cost, hit)
  local st = load(key, s)
  local impossible = cost > n
  if hit then period_of[key] = p end
  -- The windows and GCRA: the state is read into locals and written only by a hit that
  -- charges (or an elastic record), so that a peek or a denial leaves it as it was.
  if s == FIXED then
    -- The state's window, or a later one when t is before it: a key's state never moves back.
    local start, count = idiv(t, p) * p, 0
    if st.k == 'w' and st.start + p > t then start, count = st.start, st.count end
    local admitted = count + cost <= n
    if hit and admitted then
      if st.k ~= 'w' then st = replace(key, st, { k = 'w' }) end
      count = count + cost
      st.start, st.count = start, count
      dirty[key] = true
    end
    local reset = start + p
    local retry = -1
    if not admitted then
      if impossible then retry = p else retry = reset - t end
    end
    return admitted, sat_sub(n, count), reset, retry
  elseif s == FIXED_ELASTIC then
    local expires, count, start = t + p, 0, t
    if st.k == 'e' and st.expires > t then
      expires, count, start = st.expires, st.count, st.start
    end
    local admitted = count + cost <= n
    if hit and (admitted or hit == true) then
      if st.k ~= 'e' then st = replace(key, st, { k = 'e' }) end
      if admitted then count = count + cost end
      -- Never back: after the clock stepped back, t + p may fall before the end.
      expires = math.max(expires, t + p)
      st.expires, st.count, st.start = expires, count, start
      dirty[key] = true
    end
    local reset = expires
    local retry = -1
    if not admitted then
      if impossible then retry = p else retry = reset - t end
    end
    return admitted, sat_sub(n, count), reset, retry
  elseif s == MOVING or s == MOVING_ELASTIC then
    if st.k ~= 'log' then
      st = replace(key, st, { k = 'log' })
    end
    local len, skip = log_view(key, st, p)
    local used = len - skip
    local admitted = used + cost <= n
    if hit and (admitted or (hit == true and s == MOVING_ELASTIC)) then
      if st.foreign then
        redis.call('DEL', key)
        st.foreign = false
      end
      if skip > 0 then
        redis.call('LTRIM', key, skip, -1)
      end
      local record = math.min(cost, n)
      -- After the clock stepped back, hits are logged at the newest time the log holds
      -- (State::decide): the list stays in order, and its last entry dates its expiry.
      local stamp = t
      if used > 0 then
        local newest = tonumber(redis.call('LINDEX', key, -1))
        if newest > stamp then stamp = newest end
      end
      stamp = int(stamp)
      local done = 0
      while done < record do
        local chunk = {}
        local size = math.min(record - done, 1000)
        for i = 1, size do chunk[i] = stamp end
        redis.call('RPUSH', key, unpack(chunk))
        done = done + size
      end
      local excess = used + record - n
      if excess > 0 then
        redis.call('LTRIM', key, excess, -1)
      end
      len, skip = used + record - math.max(excess, 0), 0
      used = len
    end
    local reset
    if used > 0 then
      reset = tonumber(redis.call('LINDEX', key, skip)) + p
    else
      reset = t + p
    end
    local retry = -1
    if not admitted then
      if impossible then
        retry = p
      else
        local must_expire = used + cost - n
        if must_expire > 0 then
          retry = sat_sub(tonumber(redis.call('LINDEX', key, skip + must_expire - 1)) + p, t)
        else
          -- A cost-0 elastic hit that trimmed a log longer than n: it would pass now.
          retry = 0
        end
      end
    end
    return admitted, sat_sub(n, used), reset, retry
  elseif s == SLIDING then
    -- The bucket holding t (the state's current count becoming the previous one if
    -- adjacent), or the state's own when t is before its end (sliding_bucket).
    local start, current, previous = idiv(t, p) * p, 0, 0
    if st.k == 's' then
      if st.start + p > t then
        start, current, previous = st.start, st.current, st.previous
      elseif st.start + p == start then
        previous = st.current
      end
    end
    -- Dated before the bucket: counted as at its start.
    local elapsed = sat_sub(t, start)
    local weighted = sliding_weighted(previous, p, elapsed) + current
    local admitted = weighted + cost <= n
    local used = weighted
    if hit and admitted then
      if st.k ~= 's' then st = replace(key, st, { k = 's' }) end
      st.start, st.current, st.previous = start, current + cost, previous
      used = used + cost
      dirty[key] = true
    end
    local retry = -1
    if not admitted then
      if impossible then
        retry = p
      else
        retry = sat_sub(start, t) + sliding_retry(previous, current, n, cost, p, elapsed)
      end
    end
    return admitted, sat_sub(n, used), start + p, retry
  else -- GCRA
    if n == 0 then
      return false, 0, t, p
    end
    local tat, drained = t, 0
    if st.k == 'g' then tat, drained = st.tat, st.drained end
    local interval = math.max(idiv(p + n - 1, n), 1)
    local tolerance = n * interval
    local base = math.max(tat, t)
    local new_tat = base + cost * interval
    local admitted = new_tat - t <= tolerance
    local after = base
    if hit and admitted then
      if st.k ~= 'g' then st = replace(key, st, { k = 'g' }) end
      -- A charge that finds the bucket drained: the earlier ones no longer count.
      if tat <= t then drained = t end
      st.tat, st.drained = new_tat, drained
      after = new_tat
      dirty[key] = true
    end
    local remaining = idiv(sat_sub(tolerance, after - t), interval)
    local retry = -1
    if not admitted then
      if impossible then retry = p else retry = new_tat - t - tolerance end
    end
    return admitted, remaining, after, retry
  end
end

-- The newest `cost` entries of a log logged at `t` or before (a charge made at t; the
-- entries after them stay), none once they have expired: State::refund's log case.
local function unlog(key, cost)
  local len = redis.call('LLEN', key)
  -- The entries after the charge, newest last, fetched in chunks from the tail: few, as a
  -- refund follows its charge by one response's time.
  local stop, chunk = len, 16
  while stop > 0 do
    local from = math.max(stop - chunk, 0)
    local part = redis.call('LRANGE', key, from, stop - 1)
    local i = #part
    while i > 0 and tonumber(part[i]) > t do i = i - 1 end
    stop = from + i
    if i > 0 then break end
    chunk = chunk * 2
  end
  local take = math.min(cost, stop)
  if take == 0 then return end
  local after = {}
  if stop < len then after = redis.call('LRANGE', key, stop, -1) end
  if stop - take == 0 then
    redis.call('DEL', key)
  else
    redis.call('LTRIM', key, 0, stop - take - 1)
  end
  for i = 1, #after, 1000 do
    redis.call('RPUSH', key, unpack(after, i, math.min(i + 999, #after)))
  end
end

-- State::refund; `undo` for a batch's rollback of a charge just made (State::undo_logged:
-- a log gives back its newest entries, wherever the clock put them).
local function refund(key, s, n, p, cost, undo)
  local st = load(key, s)
  if s == FIXED then
    if st.k == 'w' and st.start == idiv(t, p) * p then
      st.count = sat_sub(st.count, cost)
      dirty[key] = true
      period_of[key] = p
    end
  elseif s == FIXED_ELASTIC then
    -- A charge made before the window began was for an earlier one, which has ended.
    if st.k == 'e' and st.start <= t and st.expires > t then
      st.count = sat_sub(st.count, cost)
      dirty[key] = true
      period_of[key] = p
    end
  elseif s == MOVING or s == MOVING_ELASTIC then
    if st.k == 'log' and not st.foreign then
      if undo then
        local keep = sat_sub(redis.call('LLEN', key), cost)
        if keep == 0 then
          redis.call('DEL', key)
        else
          redis.call('LTRIM', key, 0, keep - 1)
        end
      else
        unlog(key, cost)
      end
      -- store() sets the TTL by the newest entry left, or deletes an emptied key (again).
      period_of[key] = p
    end
  elseif s == SLIDING then
    -- t is the charge's time: its bucket is the current one, or the previous one once the
    -- state has rolled past it.
    local at = idiv(t, p) * p
    if st.k == 's' and at == st.start then
      st.current = sat_sub(st.current, cost)
      dirty[key] = true
      period_of[key] = p
    elseif st.k == 's' and at + p == st.start then
      st.previous = sat_sub(st.previous, cost)
      dirty[key] = true
      period_of[key] = p
    end
  elseif s == GCRA then
    -- A charge made before the bucket last drained no longer counts: nothing to give back.
    if st.k == 'g' and n > 0 and st.drained <= t then
      local back = cost * math.max(idiv(p + n - 1, n), 1)
      st.tat = math.max(sat_sub(st.tat, back), t)
      dirty[key] = true
      period_of[key] = p
    end
  end
end

-- State::expires_at: when the state becomes equivalent to none at all.
local function expires_at(key, st, p)
  if st.k == 'w' then return st.start + p end
  if st.k == 'e' then return st.expires end
  if st.k == 's' then return st.start + 2 * p end
  if st.k == 'g' then return st.tat end
  if st.k == 'log' and not st.foreign then
    local newest = redis.call('LINDEX', key, -1)
    if newest then return tonumber(newest) + p end
  end
  return 0
end

local function encode(st)
  if st.k == 'w' then return 'w:' .. int(st.start) .. ':' .. int(st.count) end
  if st.k == 'e' then
    return 'e:' .. int(st.expires) .. ':' .. int(st.count) .. ':' .. int(st.start)
  end
  if st.k == 's' then
    return 's:' .. int(st.start) .. ':' .. int(st.current) .. ':' .. int(st.previous)
  end
  return 'g:' .. int(st.tat) .. ':' .. int(st.drained)
end

-- Writes back what changed; the TTL is the state's own expiry plus the grace.
local function store(key)
  local st = cache[key]
  local p = period_of[key]
  if not p then return end
  if st.k ~= 'log' and not dirty[key] then return end
  local expires = expires_at(key, st, p)
  if expires <= t then
    redis.call('DEL', key)
    return
  end
  local ttl = idiv(expires - t + 999, 1000) + grace
  if st.k == 'log' then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('SET', key, encode(st), 'PX', ttl)
  end
end

local count = #KEYS
local function arg(i, j)
  return tonumber(ARGV[3 + 4 * (i - 1) + j])
end

local admitted, remaining, reset, retry = {}, {}, {}, {}
local function run(i, hit)
  admitted[i], remaining[i], reset[i], retry[i] =
    decide(KEYS[i], arg(i, 1), arg(i, 2), arg(i, 3), arg(i, 4), hit)
end

local function elastic(i)
  local s = arg(i, 1)
  return s == FIXED_ELASTIC or s == MOVING_ELASTIC
end

-- The limits after a denial: not charged; the elastic ones that deny too record the hit.
local function after_denial(from)
  for i = from, count do
    run(i, false)
    if not admitted[i] and elastic(i) then run(i, true) end
  end
end

-- The first limit decided and reported: after the refunded ones in a swap.
local first = 1
if string.sub(mode, 1, 5) == 'swap:' then
  first = string.sub(mode, 6) + 1
  for i = 1, first - 1 do refund(KEYS[i], arg(i, 1), arg(i, 2), arg(i, 3), arg(i, 4)) end
  mode = 'decide'
end

if mode == 'refund' then
  for i = 1, count do refund(KEYS[i], arg(i, 1), arg(i, 2), arg(i, 3), arg(i, 4)) end
  -- Only the refunds are written (a peek writes nothing anyway).
  for key, _ in pairs(period_of) do store(key) end
  for i = 1, count do run(i, false) end
elseif mode == 'peek' then
  for i = 1, count do run(i, false) end
elseif mode == 'deny' then
  after_denial(1)
elseif count == first then
  run(first, true)
else
  -- The memory store's batch: charge in order, remembering each state; on the first denial
  -- roll the earlier charges back (newest first: a key may be named twice) and report them
  -- as peeked, then treat the rest as after a denial.
  -- Each snapshot, and whether its key was to be written then (a swap's refund, say).
  local snapshots, was_dirty, overwritten = {}, {}, {}
  local denied = nil
  for i = first, count do
    local s = arg(i, 1)
    local st = load(KEYS[i], s)
    -- State::snapshot: a log (or nothing) met by the log's own strategies is undone by a
    -- refund; any other state is copied. (A log that another strategy replaces stays untouched in Redis until
    -- the end, so its copy is just the marker.)
    if (st.k ~= 'log' and st.k ~= 'empty') or (s ~= MOVING and s ~= MOVING_ELASTIC) then
      local copy = {}
      for field, value in pairs(st) do copy[field] = value end
      snapshots[i] = copy
      was_dirty[i] = dirty[KEYS[i]]
    end
    -- The denial itself changes nothing yet: an elastic limit records it after the
    -- rollback, which could otherwise undo the record when the key is named twice.
    run(i, 'charge')
    if not admitted[i] then
      denied = i
      break
    end
  end
  if denied then
    for j = denied - 1, first, -1 do
      local key = KEYS[j]
      if snapshots[j] then
        -- Restored. A string state is written by store() alone, at the end, so Redis still
        -- holds it as it was: written only if it was to be before the charge (an expired
        -- one is not deleted, as memory keeps it for a request dated before its end). A
        -- list the charge pushed is not the restored state's: written over, and it counts
        -- as foreign until then.
        if cache[key].k == 'log' and snapshots[j].k ~= 'log' then
          snapshots[j].foreign = true
          overwritten[key] = true
        end
        cache[key] = snapshots[j]
        dirty[key] = was_dirty[j] or overwritten[key]
      else
        refund(key, arg(j, 1), arg(j, 2), arg(j, 3), arg(j, 4), true)
      end
    end
    for j = first, denied - 1 do run(j, false) end
    -- A key named earlier in the batch may have denied this limit: undone, that charge
    -- leaves it passing, and its verdict stays the denial the batch was given.
    local verdict = { admitted[denied], remaining[denied], reset[denied], retry[denied] }
    after_denial(denied)
    if admitted[denied] then
      admitted[denied], remaining[denied], reset[denied], retry[denied] = unpack(verdict)
    end
  end
end

if mode ~= 'peek' and mode ~= 'refund' then
  for key, _ in pairs(period_of) do store(key) end
end

local out = {}
for i = first, count do
  local a = '0'
  if admitted[i] then a = '1' end
  out[i - first + 1] = a .. ' ' .. int(remaining[i]) .. ' ' .. int(reset[i]) .. ' ' .. int(retry[i])
end
return table.concat(out, ' ')
