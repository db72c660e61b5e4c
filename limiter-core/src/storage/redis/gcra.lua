-- limiter: the GCRA fast script. What every fast script takes and answers (a batch of
-- 1 to 8 limits decided all or nothing with the caller's arithmetic, nil for a key holding
-- anything else, no spare argument) is written once, in src/storage/redis/fast.rs. This one
-- answers one integer for a lone limit, else an array.
--
-- GCRA. ARGV[1] is now, ARGV[2] the grace in milliseconds; per limit i, from ARGV[3i]: the
-- emission interval, the tolerance (n × interval) and the increment (cost × interval). The
-- value is the theoretical arrival time: after charging, or before it max(stored, now), as
-- the general path's base. Written as store() writes it, with the time a charge last found
-- the bucket drained (refunds dated before it give nothing back; decide.lua).

local t, grace = ARGV[1] + 0, ARGV[2] + 0
local nkeys = #KEYS
local tats, drains = {}, {}
local all = true
for i = 1, nkeys do
  local value = redis.pcall('GET', KEYS[i])
  local tat, drained = t, t
  if value then
    if type(value) ~= 'string' then return nil end
    local stored, since = string.match(value, '^g:(%d+):?(%d*)$')
    if not stored then return nil end
    stored = stored + 0
    if stored > t then tat, drained = stored, tonumber(since) or 0 end
  end
  tats[i], drains[i] = tat, drained
  local at = 3 * i
  if tat + ARGV[at + 2] - t > ARGV[at + 1] + 0 then all = false end
end
for i = 1, nkeys do
  if all then
    local tat = tats[i] + ARGV[3 * i + 2]
    tats[i] = tat
    if tat <= t then
      redis.call('DEL', KEYS[i])
    else
      -- The TTL is idiv(tat - t + 999, 1000) + grace.
      local left = tat - t + 999
      local ms = math.floor(left / 1000)
      if ms * 1000 > left then ms = ms - 1 elseif (ms + 1) * 1000 <= left then ms = ms + 1 end
      redis.call('SET', KEYS[i], string.format('g:%d:%d', tat, drains[i]), 'PX', ms + grace)
    end
  else
    tats[i] = -tats[i] - 1
  end
end
if nkeys == 1 then return tats[1] end
return tats
