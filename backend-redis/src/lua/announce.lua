-- Prepended to the scripts that free a lock or a permit (scripts.rs joins them).

-- Announces that `name` may be free on `channel`: with SPUBLISH when `sharded` is "sharded"
-- (Redis Cluster: only the shard of the slot hears it; the channel carries the name's hash
-- tag), else with PUBLISH.
local function announce(channel, name, sharded)
  if sharded == 'sharded' then
    -- pcall: a Redis before 7.0 has no SPUBLISH; its waiters poll.
    redis.pcall('SPUBLISH', channel, name)
  else
    redis.call('PUBLISH', channel, name)
  end
end

