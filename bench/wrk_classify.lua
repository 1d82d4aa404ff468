-- wrk script: POST /classify with short sentences in turn; prints p50/p99 and error counts.
-- Sentences: the first lines of SST-2 dev when UFBD_TEXTS names a file, else a fixed list.
local texts = {}
local path = os.getenv("UFBD_TEXTS")
if path then
  for line in io.lines(path) do
    local s = line:gsub('[\\"]', ""):gsub("\t.*$", "")
    if #s > 0 and #texts < 200 then texts[#texts + 1] = s end
  end
end
if #texts == 0 then
  texts = {"a gorgeous , witty , seductive movie .", "unflinchingly bleak and desperate",
           "it 's a charming and often affecting journey .", "the plot is paper-thin"}
end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/classify", {["Content-Type"] = "application/json"},
                    '{"inputs": "' .. texts[(i % #texts) + 1] .. '", "return_stats": false}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("requests %d  rps %.1f  p50_ms %.3f  p99_ms %.3f  non2xx %d  "
                         .. "socket_errors %d\n", summary.requests,
                         summary.requests / (summary.duration / 1e6),
                         latency:percentile(50) / 1000, latency:percentile(99) / 1000,
                         e.status, e.connect + e.read + e.write + e.timeout))
end
