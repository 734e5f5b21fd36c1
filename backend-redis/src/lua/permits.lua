-- Prepended (after token.lua) to the semaphore scripts: the live permits of one semaphore.
-- A semaphore is a ZSET of its live permits, "<holder>:<token>" scored by their expiry (server
-- TIME in microseconds), and a HASH holding the limit (field "limit") and each permit's owner
-- label (field: the member; empty for none). A permit whose score is at or below now has
-- expired: it is dropped before anything counts the permits, and never renewed.

-- A number as the decimal digits Redis should see (no exponent).
local function digits_of(n)
  return string.format('%.0f', n)
end

-- Drops the permits that expired by `now`, with their labels; and the limit with the last of
-- them, so that a new limit holds once nobody holds.
local function drop_expired(permits, info, now)
  local expired = redis.call('ZRANGEBYSCORE', permits, '-inf', digits_of(now))
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', permits, '-inf', digits_of(now))
    -- In slices: unpack has a bounded stack and a limit allows 10,000 permits.
    for i = 1, #expired, 500 do
      redis.call('HDEL', info, unpack(expired, i, math.min(i + 499, #expired)))
    end
  end
  if redis.call('ZCARD', permits) == 0 then
    redis.call('DEL', info)
  end
end

-- Whether `member` is a live permit at `now`. If not, the expired permits (it among them, if it
-- expired) are dropped: an expired permit is never revived.
local function is_live(permits, info, member, now)
  local score = redis.call('ZSCORE', permits, member)
  if score and tonumber(score) > now then
    return true
  end
  drop_expired(permits, info, now)
  return false
end

-- Makes both keys expire just after the last live permit does, so that an abandoned semaphore
-- leaves nothing behind but its token counter.
local function expire_with_last(permits, info, now)
  local last = redis.call('ZRANGE', permits, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', info)
    return
  end
  local ms = digits_of(math.ceil((tonumber(last[2]) - now) / 1000) + 1)
  redis.call('PEXPIRE', permits, ms)
  redis.call('PEXPIRE', info, ms)
end

