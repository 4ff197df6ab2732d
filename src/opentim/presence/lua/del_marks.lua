-- del_marks(now, {account, k, mark1..markk}...)
-- -> {'OK', n_off, off..., n, {account, went_offline, "marks left"}...}
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
local offline = expire_due(NOW_S) -- afterwards: listed == online
local res = {}
local i = 2
while i <= #ARGV do
  local acc, k = ARGV[i], tonumber(ARGV[i + 1])
  local rm = {}
  for j = 1, k do rm[ARGV[i + 1 + j]] = true end
  i = i + 2 + k
  if redis.call('ZSCORE', K_ORD, acc) then
    local kept = {}
    for _, m in ipairs(marks_list(acc)) do
      if rm[m] then unindex(acc, m) else kept[#kept + 1] = m end
    end
    store_marks(acc, kept)
    if redis.call('HEXISTS', K_NC, acc) == 0 and not valid500(acc, NOW) then
      purge(acc) -- its 500 was what kept it listed
      offline[#offline + 1] = acc
      res[#res + 1] = acc
      res[#res + 1] = 1
      res[#res + 1] = ''
    else
      res[#res + 1] = acc
      res[#res + 1] = 0
      res[#res + 1] = table.concat(kept, ',')
    end
  end
end
local out = { 'OK', #offline }
for _, a in ipairs(offline) do out[#out + 1] = a end
out[#out + 1] = #res / 3
for _, v in ipairs(res) do out[#out + 1] = v end
return out
