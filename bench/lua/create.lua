-- POST /Patient with the same body (BENCH_BODY_FILE) every time: each request creates a resource.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.serve(function()
  local body = common.read_file(os.getenv("BENCH_BODY_FILE"))
  local headers = common.headers({ ["Content-Type"] = "application/fhir+json" })
  return { wrk.format("POST", "/Patient", headers, body) }
end)
