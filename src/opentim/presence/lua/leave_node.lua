-- leave_node(node, cursor, count, now, since) -> {next_cursor, accounts that went offline...}
-- Drops the connections a dead node held in this group, a HSCAN batch per call so that a
-- huge group never blocks Redis for long. Not DEL: a node that lost its lease but is
-- still alive may add connections meanwhile, and those must keep their counts right.
-- The accounts it takes offline are reported as heartbeat interruptions, so they are
-- remembered as such: reconnecting within the window, through any node, is a recovery.
local node, NOW = ARGV[1], tonumber(ARGV[4])
local nk = nkey(node)
local r = redis.call('HSCAN', nk, ARGV[2], 'COUNT', ARGV[3])
local out = { r[1] }
local kv = r[2]
for i = 1, #kv, 2 do
  -- HSCAN may repeat a field; only a conn actually removed counts
  if redis.call('HDEL', nk, kv[i]) == 1 and conn_gone(kv[i + 1], NOW) == 1 then
    out[#out + 1] = kv[i + 1]
    remember_interruption(kv[i + 1], ARGV[4])
  end
end
if #out > 1 then trim_interruptions(ARGV[5]) end
if redis.call('EXISTS', nk) == 0 then redis.call('SREM', K_NODES, node) end
return out
