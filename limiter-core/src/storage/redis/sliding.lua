-- limiter: the sliding-window fast script. What every fast script takes and answers (a batch of
-- 1 to 8 limits decided all or nothing with the caller's arithmetic, nil for a key holding
-- anything else, no spare argument) is written once, in src/storage/redis/fast.rs. This one
-- answers an array.
--
-- Sliding window counters. Per limit i, from ARGV[6i - 5]: the current bucket's start, the
-- previous bucket's start ("-" when there is none), the previous bucket's weight now
-- ((p - elapsed) / p, written so that it reads back as the same double), the amount n, the
-- cost, and the TTL in milliseconds to write. The values are the current bucket's count and
-- the previous bucket's, two per limit; only the current one carries the sign that tells a
-- charged batch.

local nkeys = #KEYS
local counts = {}
local all = true
for i = 1, nkeys do
  local at = 6 * i - 5
  local value = redis.pcall('GET', KEYS[i])
  local current, previous = 0, 0
  if value then
    if type(value) ~= 'string' then return nil end
    local start, c, prev = string.match(value, '^s:(%d+):(%d+):(%d+)$')
    if not start then return nil end
    -- decide()'s roll: the same bucket, the one after it, or a fresh one. A later bucket
    -- (a request dated before it counts in it) is the general script's work.
    if start == ARGV[at] then
      current, previous = c + 0, prev + 0
    elseif start == ARGV[at + 1] then
      previous = c + 0
    elseif start + 0 > ARGV[at] + 0 then
      return nil
    end
  end
  counts[2 * i - 1], counts[2 * i] = current, previous
  local weighted = current
  if previous > 0 then weighted = math.floor(previous * ARGV[at + 2]) + current end
  if weighted + ARGV[at + 4] > ARGV[at + 3] + 0 then all = false end
end
for i = 1, nkeys do
  local at = 6 * i - 5
  if all then
    local current = counts[2 * i - 1] + ARGV[at + 4]
    counts[2 * i - 1] = current
    -- Counts stay below 2^32: `..` writes them in full.
    redis.call('SET', KEYS[i], 's:' .. ARGV[at] .. ':' .. current .. ':' .. counts[2 * i],
      'PX', ARGV[at + 5])
  else
    counts[2 * i - 1] = -counts[2 * i - 1] - 1
  end
end
return counts
