-- GET /baseline: the bare FastAPI route that crud_bench.py compares the server against.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.serve(function()
  return { wrk.format("GET", "/baseline", common.headers()) }
end)
