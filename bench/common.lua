-- Shared part of the bench/*.lua wrk scripts (loaded with dofile by each of them).
--
-- * gives every wrk thread its own number (`thread_id`, 1-based) and random seed;
-- * counts responses by HTTP status in every thread (`statuses`);
-- * prints one machine-readable line at the end that bench/run.sh parses:
--     BENCH requests=N rps=R ok=N ok_rps=R non2xx=N p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=..
--           max_ms=.. statuses=202:N,503:N errors=connect:0,read:0,write:0,timeout:0
--   `ok` counts 2xx answers only: a fast 503 must not pass for throughput.

local threads = {}
local next_id = 1

-- Runs in wrk's main Lua state, once per thread, before that thread's init().
function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

statuses = {}

-- Call from init(): a different random sequence per thread and per run.
function seed_random()
   math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
   for _ = 1, 10 do math.random() end
end

-- Counts one answer by status; returns true for a 2xx.
function count_status(status)
   statuses[status] = (statuses[status] or 0) + 1
   return status >= 200 and status < 300
end

function response(status, headers, body)
   count_status(status)
end

-- Runs in the main state after the run: merge the threads' counters and print the summary.
function done(summary, latency, requests)
   local merged, ok, total = {}, 0, 0
   for _, t in ipairs(threads) do
      for status, n in pairs(t:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + n
         total = total + n
         if status >= 200 and status < 300 then ok = ok + n end
      end
   end
   local codes = {}
   for status in pairs(merged) do table.insert(codes, status) end
   table.sort(codes)
   local parts = {}
   for _, status in ipairs(codes) do table.insert(parts, status .. ":" .. merged[status]) end
   local secs = summary.duration / 1e6
   local e = summary.errors
   local function ms(us) return string.format("%.3f", us / 1000) end
   io.write(string.format(
      "BENCH requests=%d rps=%.1f ok=%d ok_rps=%.1f non2xx=%d p50_ms=%s p90_ms=%s p99_ms=%s p999_ms=%s max_ms=%s statuses=%s errors=connect:%d,read:%d,write:%d,timeout:%d\n",
      summary.requests, summary.requests / secs, ok, ok / secs, total - ok,
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
      ms(latency:percentile(99.9)), ms(latency.max),
      (#parts > 0 and table.concat(parts, ",") or "none"),
      e.connect, e.read, e.write, e.timeout))
end
