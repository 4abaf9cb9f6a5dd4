#!lua name=sse
--
-- The publish function of the SSE gateway's Redis schema (see schema/mod.rs).
--
--   FCALL sse_publish 1 sse:{<topic>}:stream <data> <event> <maxlen> <max-age-ms>
--
-- One atomic call: append the event to the topic's stream (XADD, trimmed to about <maxlen>
-- entries, and to <max-age-ms> when that is not 0), then announce "<id>\n<event>\n<data>" on the
-- topic's channel. Returns the id Redis assigned. Invalid input is refused before anything is
-- written, so a failed call has written nothing.
--
-- The rules below mirror sse-core's Topic and EventName; a change here is a schema change.
--
-- The announcement goes out with PUBLISH on one Redis. On a Redis Cluster it must be SPUBLISH
-- (sharded pub/sub: only the shard that owns the topic's slot carries it): the library loaded
-- there has the next line changed to 'SPUBLISH', nothing else.
local ANNOUNCE = 'PUBLISH'

local USAGE = 'usage: FCALL sse_publish 1 sse:{<topic>}:stream <data> <event or ""> <maxlen> <max-age-ms or 0>'

local function fail(message)
  return redis.error_reply('ERR sse_publish: ' .. message)
end

local function publish(keys, args)
  if #keys ~= 1 or #args ~= 4 then
    return fail(USAGE)
  end
  local stream, data, event = keys[1], args[1], args[2]
  local topic = string.match(stream, '^sse:{([%w_.:/%-]+)}:stream$')
  if not topic or #topic > 128 then
    return fail('key ' .. string.format('%q', string.sub(stream, 1, 200)) ..
      ' is not sse:{<topic>}:stream with a topic of 1 to 128 ASCII letters, digits and _ - . : /')
  end
  if #event > 128 or string.find(event, '[\r\n%z]') or string.sub(event, 1, 4) == 'sse.' then
    return fail('event name must be at most 128 bytes, without CR, LF or NUL, and not start with "sse."')
  end
  local maxlen, max_age = tonumber(args[3]), tonumber(args[4])
  if not maxlen or maxlen < 1 or maxlen ~= math.floor(maxlen) then
    return fail('maxlen must be a whole number of at least 1; ' .. USAGE)
  end
  if not max_age or max_age < 0 or max_age ~= math.floor(max_age) then
    return fail('max-age-ms must be a whole number of milliseconds, 0 for no age limit; ' .. USAGE)
  end

  local id
  if event == '' then
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'data', data)
  else
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'data', data, 'event', event)
  end
  if max_age > 0 then
    local now = redis.call('TIME')
    local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
    if oldest > 0 then
      redis.call('XTRIM', stream, 'MINID', '~', string.format('%d', oldest))
    end
  end
  redis.call(ANNOUNCE, 'sse:{' .. topic .. '}:live', id .. '\n' .. event .. '\n' .. data)
  return id
end

redis.register_function('sse_publish', publish)
