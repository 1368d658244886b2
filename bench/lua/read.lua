-- GET /Patient/{id} over the ids created before the run (one per line in BENCH_IDS_FILE).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.serve(function()
  local requests = {}
  for _, id in ipairs(common.lines(os.getenv("BENCH_IDS_FILE"))) do
    requests[#requests + 1] = wrk.format("GET", "/Patient/" .. id, common.headers())
  end
  return requests
end)
