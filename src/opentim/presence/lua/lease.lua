-- Node leases (not a per-group script). KEYS[1]: zset node id -> lease deadline (unix s).
-- A zset of deadlines instead of TTL keys: dead nodes are found with one range query
-- (no SCAN), a dead node stays listed until someone cleaned up after it, and the
-- deadlines follow the callers' clocks, which tests can inject.
--   register(node, deadline)          -> 1
--   refresh(node, expected, deadline) -> 1, or 0 if the lease was claimed/removed (lost)
--   claim(node, now, claim_until)     -> 1 if the lease had expired and is now ours
--   release(node, claim_until)        -> 1 if still our claim and removed
local op, node = ARGV[1], ARGV[2]
local cur = redis.call('ZSCORE', KEYS[1], node)
if op == 'register' then
  redis.call('ZADD', KEYS[1], ARGV[3], node)
  return 1
elseif op == 'refresh' then
  if cur and tonumber(cur) == tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[1], ARGV[4], node)
    return 1
  end
  return 0
elseif op == 'claim' then
  if cur and tonumber(cur) <= tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[1], ARGV[4], node)
    return 1
  end
  return 0
elseif op == 'release' then
  if cur and tonumber(cur) == tonumber(ARGV[3]) then
    redis.call('ZREM', KEYS[1], node)
    return 1
  end
  return 0
end
return redis.error_reply('unknown lease op ' .. tostring(op))
