-- GET every path in BENCH_PATHS_FILE (one per line, already percent-encoded), round-robin: the
-- prebuilt, varied requests of one search_bench.py query.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.serve(function()
  local requests = {}
  for _, path in ipairs(common.lines(os.getenv("BENCH_PATHS_FILE"))) do
    requests[#requests + 1] = wrk.format("GET", path, common.headers())
  end
  return requests
end)
