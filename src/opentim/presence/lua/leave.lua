-- leave(node, conn, account, now) -> 1 went offline | 0 still listed | -1 no such conn
local node, conn, acc = ARGV[1], ARGV[2], ARGV[3]
local nk = nkey(node)
if redis.call('HGET', nk, conn) ~= acc then return -1 end
redis.call('HDEL', nk, conn)
if redis.call('EXISTS', nk) == 0 then redis.call('SREM', K_NODES, node) end
return conn_gone(acc, tonumber(ARGV[4]))
