-- classify.lua — wrk script for tests/soak/soak.sh: POST /classify with short sentences
-- (one input each, as most clients send) and count the responses by status. done() prints
-- machine-readable "SOAK ..." lines: statuses, socket errors, requests, latency percentiles.

local texts = {
    "a gorgeous , witty , seductive movie .",
    "the plot is paper-thin and the acting worse",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the movie is long , slow and very , very boring",
    "a masterpiece four years in the making",
    "ok",
    "an utterly compelling story in which the reputation of the most famous author comes into question .",
}

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    counts = {}
    n = 0
end

function request()
    n = n + 1
    local body = '{"inputs": "' .. texts[(n % #texts) + 1] .. '"}'
    return wrk.format("POST", "/classify", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for status, c in pairs(t:get("counts")) do
            total[status] = (total[status] or 0) + c
        end
    end
    for status, c in pairs(total) do
        io.write(string.format("SOAK status %d %d\n", status, c))
    end
    local e = summary.errors
    io.write(string.format("SOAK errors connect=%d read=%d write=%d timeout=%d\n",
                           e.connect, e.read, e.write, e.timeout))
    io.write(string.format("SOAK requests %d duration_us %d\n", summary.requests, summary.duration))
    io.write(string.format("SOAK latency_us p50=%d p99=%d max=%d\n",
                           latency:percentile(50), latency:percentile(99), latency.max))
end
