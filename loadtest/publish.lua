-- wrk script: POST one small JSON event per request to /v1/publish.
-- wrk -t1 -c64 -d10s -s loadtest/publish.lua http://127.0.0.1:8081/v1/publish
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("SSE_TOKEN") or "dev-token")
wrk.body = '{"topic":"bench","data":{"seq":123456,"ts":1700000000000,"body":"a typical small event"}}'
