-- Prepended (after token.lua) to the semaphore scripts: the live permits of one semaphore.
-- A semaphore is a ZSET of its live permits, "<holder>:<token>[:<label>]" (as a lock's value)
-- scored by their expiry (server TIME in microseconds), and a string key holding the limit they
-- were granted under. A permit whose score is at or below now has expired: it is dropped before
-- anything counts the permits, and never renewed.

-- A number as the decimal digits Redis should see (no exponent).
local function digits_of(n)
  return string.format('%.0f', n)
end

-- Drops the permits that expired by `now`; and the limit with the last of them, so that a new
-- limit holds once nobody holds.
local function drop_expired(permits, limit, now)
  redis.call('ZREMRANGEBYSCORE', permits, '-inf', digits_of(now))
  if redis.call('ZCARD', permits) == 0 then
    redis.call('DEL', limit)
  end
end

-- Whether `member` is a live permit at `now`. If not, the expired permits (it among them, if it
-- expired) are dropped: an expired permit is never revived.
local function is_live(permits, limit, member, now)
  local score = redis.call('ZSCORE', permits, member)
  if score and tonumber(score) > now then
    return true
  end
  drop_expired(permits, limit, now)
  return false
end

-- Makes both keys expire just after the last live permit does, so that an abandoned semaphore
-- leaves nothing behind but its token counter.
local function expire_with_last(permits, limit, now)
  local last = redis.call('ZRANGE', permits, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', limit)
    return
  end
  local ms = digits_of(math.ceil((tonumber(last[2]) - now) / 1000) + 1)
  redis.call('PEXPIRE', permits, ms)
  redis.call('PEXPIRE', limit, ms)
end

