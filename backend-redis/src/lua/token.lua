-- Prepended to every script that reads the server clock or mints a fencing token (scripts.rs
-- joins them), so the token rule is written once.
if redis.replicate_commands then
  -- Redis < 5 needs this to write after reading TIME; later versions always replicate effects.
  pcall(redis.replicate_commands)
end

-- The server's clock (TIME) in microseconds.
local function server_micros()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000000 + tonumber(now[2])
end

-- Mints the next token of the counter at key `counter` and stores it there: max(previous + 1,
-- floor). The counter survives release; the floor (the server's TIME in microseconds) keeps
-- tokens rising even if the counter was lost (restart without persistence, failover to a
-- replica that missed writes), as long as the server clock moves forward. Lua numbers are
-- doubles, so tokens stay at or below 2^53 - 1.
-- Returns the token's decimal digits, or nil and an error reply.
local function mint_token(counter, floor)
  local previous = tonumber(redis.call('GET', counter) or '0')
  if previous == nil then
    return nil, redis.error_reply('fencelock: token counter ' .. counter .. ' does not hold a number')
  end
  local token = math.max(previous + 1, floor)
  if token > 9007199254740991 then
    return nil, redis.error_reply('fencelock: token counter ' .. counter .. ' is exhausted (2^53 - 1)')
  end
  local digits = string.format('%.0f', token)
  redis.call('SET', counter, digits)
  return digits
end

