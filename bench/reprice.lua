-- wrk script: POST /api/reprice, every request a random product of a pool and a random
-- price with two decimals (1.00 .. 999.99).
--   wrk -s bench/reprice.lua URL -- [POOL=100000] [PREFIX=bench-]
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local pool, prefix
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   pool = tonumber(args[1]) or 100000
   prefix = args[2] or "bench-"
   seed_random()
end

function request()
   local body = string.format('{"productId":"%s%d","price":%d.%02d}',
      prefix, math.random(0, pool - 1), math.random(1, 999), math.random(0, 99))
   return wrk.format("POST", "/api/reprice", headers, body)
end
