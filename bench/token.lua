-- wrk script for POST /token (bench/bench.py runs it; see BENCHMARKS.md).
--
--   wrk -t1 -c32 -d10s -s bench/token.lua URL/token -- MODE AUTH BODY_OR_POOL NTHREADS SAMPLE_EVERY SAMPLE_PREFIX
--
-- MODE cc:      every request POSTs BODY (a client_credentials form) with "Authorization: AUTH".
-- MODE refresh: every request POSTs grant_type=refresh_token with the next unused token from the file
--               POOL (one per line; thread i takes lines i, i+N, ...): refresh tokens are one-time.
-- MODE form:    every request POSTs the next unused line of POOL as the whole form body (authorization
--               codes with their PKCE verifier: one-time too).
-- Every SAMPLE_EVERY-th 200 response body is appended to SAMPLE_PREFIX<thread>.txt so that the harness
-- can check the issued tokens. done() prints one line "BENCH_JSON {...}" with the figures.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  mode = args[1]
  auth = args[2]
  source = args[3]
  nthreads = tonumber(args[4])
  sample_every = tonumber(args[5])
  sample_prefix = args[6]
  ok, non200, used, exhausted, sampled = 0, 0, 0, 0, 0
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = auth}
  pool = {}
  if mode == "refresh" or mode == "form" then
    local n = 0
    for line in io.lines(source) do
      if n % nthreads == thread_id - 1 then
        pool[#pool + 1] = line
      end
      n = n + 1
    end
  else
    body = source
  end
  sample_file = io.open(sample_prefix .. thread_id .. ".txt", "a")
end

function request()
  if mode == "refresh" or mode == "form" then
    used = used + 1
    local token = pool[used]
    if token == nil then
      exhausted = exhausted + 1
      token = pool[#pool] or "exhausted"
    end
    if mode == "form" then
      return wrk.format("POST", nil, headers, token)
    end
    return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
  end
  used = used + 1
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, resp_body)
  if status == 200 then
    ok = ok + 1
    if ok % sample_every == 0 then
      sample_file:write(resp_body, "\n")
      sample_file:flush()
      sampled = sampled + 1
    end
  else
    non200 = non200 + 1
    if non200 <= 3 then
      sample_file:write("ERROR ", status, " ", resp_body, "\n")
      sample_file:flush()
    end
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, non200 = 0, used = 0, exhausted = 0, sampled = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d',
                  e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f',
                  latency:percentile(50), latency:percentile(90), latency:percentile(99),
                  latency:percentile(99.9), latency.max, latency.mean),
  }
  for k, v in pairs(t) do
    parts[#parts + 1] = string.format('"%s":%d', k, v)
  end
  io.write("BENCH_JSON {", table.concat(parts, ","), "}\n")
end
