-- wrk script: GET /api/product/{id}/price of a random known product.
--   wrk -s bench/get.lua URL -- [POOL=10000] [PREFIX=get-]
-- The products PREFIX0 .. PREFIX(POOL-1) must exist (bench/load.lua writes them).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local pool, prefix

function init(args)
   pool = tonumber(args[1]) or 10000
   prefix = args[2] or "get-"
   seed_random()
end

function request()
   return wrk.format("GET", string.format("/api/product/%s%d/price", prefix, math.random(0, pool - 1)))
end
