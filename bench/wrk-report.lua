-- wrk script for the closed-loop scenarios: an optional method and body file
-- (wrk ... -- METHOD BODY_FILE), and one JSON line at the end for the harness.
function init(args)
  if args[1] then wrk.method = args[1] end
  if args[2] then
    local file = assert(io.open(args[2], "rb"))
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["content-type"] = "application/octet-stream"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
