-- limiter: the fixed-window fast script. What every fast script takes and answers (a batch of
-- 1 to 8 limits decided all or nothing with the caller's arithmetic, nil for a key holding
-- anything else, no spare argument) is written once, in src/storage/redis/fast.rs. This one
-- answers one integer for a lone limit, else an array.
--
-- Fixed windows. Per limit i, from ARGV[4i - 3]: "w:<window start>:" (the prefix of the
-- key's value in this window), the amount n, the cost, and the TTL in milliseconds to write.
-- The value is the window's count.

-- The count a key's value holds in the window `prefix` names: 0 for no value or an ended
-- window, nil for anything else, a later window included (a request dated before the
-- window counts in it: the general script's work). This window's count is read with
-- tonumber, cheaper than the pattern match: a value with this window's prefix is one a
-- script wrote.
local function count_of(value, prefix)
  if not value then return 0 end
  if type(value) ~= 'string' then return nil end
  if string.find(value, prefix, 1, true) == 1 then return tonumber(string.sub(value, #prefix + 1)) end
  local start = string.match(value, '^w:(%d+):%d+$')
  if start and start + 0 < string.sub(prefix, 3, -2) + 0 then return 0 end
  return nil
end
local nkeys = #KEYS
-- A lone limit without the tables of a batch.
if nkeys == 1 then
  local prefix, cost = ARGV[1], ARGV[3]
  local count = count_of(redis.pcall('GET', KEYS[1]), prefix)
  if not count then return nil end
  if count + cost > ARGV[2] + 0 then return -count - 1 end
  count = count + cost
  -- Counts stay below 2^32: `..` writes them in full.
  redis.call('SET', KEYS[1], prefix .. count, 'PX', ARGV[4])
  return count
end
local counts = {}
local all = true
for i = 1, nkeys do
  local at = 4 * i - 3
  local count = count_of(redis.pcall('GET', KEYS[i]), ARGV[at])
  if not count then return nil end
  counts[i] = count
  if count + ARGV[at + 2] > ARGV[at + 1] + 0 then all = false end
end
for i = 1, nkeys do
  local at = 4 * i - 3
  if all then
    counts[i] = counts[i] + ARGV[at + 2]
    redis.call('SET', KEYS[i], ARGV[at] .. counts[i], 'PX', ARGV[at + 3])
  else
    counts[i] = -counts[i] - 1
  end
end
return counts
