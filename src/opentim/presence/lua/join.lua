-- join(node, conn, account, row, now, since)
--   -> 1 became online | 2 became online within the window of a heartbeat interruption
--      (at or after since = now - window) | 3 became online, removing a lapsed 500 that
--      still listed it | 0 already online | -1 duplicate conn
local node, conn, acc, row, NOW = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HSETNX', nkey(node), conn, acc) == 0 then return -1 end
redis.call('SADD', K_NODES, node)
if redis.call('HINCRBY', K_NC, acc, 1) > 1 then return 0 end
local lapsed = false
if redis.call('ZSCORE', K_ORD, acc) then
  -- listed without a connection: by a valid 500 it stays as it is (same seq and row);
  -- by a lapsed one it is offline already, so start afresh (the caller reports it)
  if valid500(acc, NOW) then return 0 end
  purge(acc)
  lapsed = true
end
local seq = redis.call('INCR', K_SEQ)
redis.call('ZADD', K_ORD, seq, acc)
redis.call('HSET', K_ROW, acc, row)
local recovered = recovering(acc, ARGV[6])
if lapsed then return 3 end
if recovered then return 2 end
return 1
