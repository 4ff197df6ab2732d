-- state(now, account...) -> {online(0|1), "marks", ...} per account; a lapsed 500 is left out
local NOW = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local a = ARGV[i]
  local online, marks = 0, ''
  if redis.call('ZSCORE', K_ORD, a) then
    local v500 = valid500(a, NOW)
    if v500 or redis.call('HEXISTS', K_NC, a) == 1 then
      online = 1
      local t = {}
      for _, m in ipairs(marks_list(a)) do
        if m ~= '500' or v500 then t[#t + 1] = m end
      end
      marks = table.concat(t, ',')
    end
  end
  out[#out + 1] = online
  out[#out + 1] = marks
end
return out
