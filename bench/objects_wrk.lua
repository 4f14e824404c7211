-- wrk script of bench/objects.py: GETs spread over a bucket's objects.
--
--   wrk ... -s bench/objects_wrk.lua http://HOST:PORT -- PREFIX COUNT NONCE
--
-- PREFIX is the objects' path up to their number ("/default/1KiB/"), COUNT how many
-- there are (named 000, 001, ...). NONCE "-" asks for the objects themselves (hits,
-- once the cache holds them); any other NONCE gives every request a path no one has
-- asked for before, PREFIX NNN "/m/" NONCE "-" THREAD "-" N, which the origin maps
-- back to object NNN (so each request is a cache miss that fetches a real object).
-- done() prints one line, RESULT {json}, with the figures bench/objects.py reads.

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  prefix = args[1]
  count = tonumber(args[2])
  nonce = args[3]
  -- threads start apart so they do not ask for the same object at the same moment
  n = id * 7
  if nonce == "-" then
    -- built once: a hit request costs wrk no string formatting
    fixed = {}
    for i = 0, count - 1 do
      fixed[i] = wrk.format("GET", string.format("%s%03d", prefix, i))
    end
  end
end

function request()
  n = n + 1
  local i = n % count
  if fixed then
    return fixed[i]
  end
  return wrk.format("GET", string.format("%s%03d/m/%s-%d-%d", prefix, i, nonce, id, n))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
