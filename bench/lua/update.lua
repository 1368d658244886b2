-- PUT /Patient/{id} over the ids in BENCH_IDS_FILE. BENCH_BODY_FILE is the Patient with the
-- placeholder __ID__ where the body's id goes, so each body carries the id of its URL.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.serve(function()
  local template = common.read_file(os.getenv("BENCH_BODY_FILE"))
  local requests = {}
  for _, id in ipairs(common.lines(os.getenv("BENCH_IDS_FILE"))) do
    local body = template:gsub("__ID__", id)
    local headers = common.headers({ ["Content-Type"] = "application/fhir+json" })
    requests[#requests + 1] = wrk.format("PUT", "/Patient/" .. id, headers, body)
  end
  return requests
end)
