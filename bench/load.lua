-- wrk script: writes COUNT distinct products PREFIX0 .. PREFIX(COUNT-1), one reprice each.
--   wrk -s bench/load.lua URL -- COUNT [PREFIX=load-]
-- Thread t of T posts the ids t-1, t-1+T, t-1+2T, ... and stops once it has received a 2xx for
-- as many requests as it owns ids. Ids are reissued in a cycle, so an id refused with a non-2xx
-- is posted again later. wrk itself only exits at the end of -d or on SIGINT: bench/run.sh
-- watches the service's event counter and interrupts wrk when the load is complete.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local count, prefix, nthreads, quota
local sent, acked = 0, 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   count = tonumber(args[1]) or error("load.lua: COUNT missing")
   prefix = args[2] or "load-"
   nthreads = tonumber(args[3]) or 1
   -- ids n with n % nthreads == thread_id - 1
   quota = math.floor((count - thread_id) / nthreads) + 1
   seed_random()
end

function request()
   local n = (thread_id - 1) + nthreads * (sent % quota)
   sent = sent + 1
   local body = string.format('{"productId":"%s%d","price":%d.%02d}',
      prefix, n, math.random(1, 999), math.random(0, 99))
   return wrk.format("POST", "/api/reprice", headers, body)
end

function response(status, headers, body)
   if count_status(status) then
      acked = acked + 1
      if acked >= quota then wrk.thread:stop() end
   end
end
