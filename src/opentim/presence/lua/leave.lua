-- leave(node, conn, account, now, interrupted, since)
--   -> 1 went offline | 0 still listed | -1 no such conn
-- interrupted '1': the connection timed out; if acc goes offline, remember it (see
-- remember_interruption); since = now - window, for trimming.
local node, conn, acc = ARGV[1], ARGV[2], ARGV[3]
local nk = nkey(node)
if redis.call('HGET', nk, conn) ~= acc then return -1 end
redis.call('HDEL', nk, conn)
if redis.call('EXISTS', nk) == 0 then redis.call('SREM', K_NODES, node) end
local gone = conn_gone(acc, tonumber(ARGV[4]))
if gone == 1 and ARGV[5] == '1' then
  remember_interruption(acc, ARGV[4])
  trim_interruptions(ARGV[6])
end
return gone
