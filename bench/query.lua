-- wrk script: GET /api/query, 25 records a page.
--   wrk -s bench/query.lua URL -- product [POOL=10000] [PREFIX=get-]
--       ?productId=<random known product>&pagesize=25   (page 1 of one product's history)
--   wrk -s bench/query.lua URL -- page [PAGES=1]
--       ?pageNumber=<random 1..PAGES>&pagesize=25        (unfiltered, anywhere in the history)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local mode, pool, prefix, pages

function init(args)
   mode = args[1] or "product"
   if mode == "product" then
      pool = tonumber(args[2]) or 10000
      prefix = args[3] or "get-"
   elseif mode == "page" then
      pages = tonumber(args[2]) or 1
   else
      error("query.lua: mode must be 'product' or 'page', got " .. tostring(mode))
   end
   seed_random()
end

function request()
   if mode == "product" then
      return wrk.format("GET", string.format("/api/query?productId=%s%d&pagesize=25", prefix, math.random(0, pool - 1)))
   end
   return wrk.format("GET", string.format("/api/query?pageNumber=%d&pagesize=25", math.random(1, pages)))
end
