-- wrk script: POST a batch of 100 small JSON events per request to /v1/publish.
-- wrk -t1 -c16 -d10s -s loadtest/publish-batch.lua http://127.0.0.1:8081/v1/publish
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("SSE_TOKEN") or "dev-token")
local events = {}
for i = 1, 100 do
  events[i] = '{"topic":"bench","data":{"seq":' .. i .. ',"body":"a typical small event"}}'
end
wrk.body = "[" .. table.concat(events, ",") .. "]"
