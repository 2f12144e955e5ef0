"""The Lua bootstrap that builds a script's sandbox: safe globals, an instruction hook, decisions."""

# Run once per runtime with the full standard library still present. It captures what the
# sandbox itself needs (debug.sethook, debug.setupvalue, load) in locals, returns the control
# functions to Python, and the caller then removes every dangerous global from the runtime.
# `py` is a table of Python callables; scripts only ever see Lua closures around them, so no
# Python object (and no Python metatable) is reachable from a script.
BOOTSTRAP = r"""
local py, host = ...
local sethook, setupvalue = debug.sethook, debug.setupvalue
local load, error, pairs, type, select = load, error, pairs, type, select
local setmetatable, tostring, rawget, pcall = setmetatable, tostring, rawget, pcall
local cocreate, costatus, tpack, tunpack = coroutine.create, coroutine.status, table.pack, table.unpack
local sfind_plain = function(s, p) return string.find(s, p, 1, true) end
local clock, expired = os.clock, host.expired
local STEP = 1000
local CHECK = 0.01  -- ask Python for the wall clock after this much process CPU time
local WORK = 1048576  -- bytes a wrapped C function may process between two clock checks
local budget, used, work, next_check, dead = 0, 0, 0, 0, nil

-- Count hook. Once a limit is hit it fires on every instruction of the thread it is in, so a
-- pcall() around the failing code cannot swallow the error and carry on; `dead` makes every
-- other thread fail at its next hook too.
-- Lua runs code with hooks off in three places: inside a hook (and in the message handler of
-- an error the hook raises), in __gc finalizers, and in __close handlers of a coroutine that
-- died in a hook. Scripts reach none of them: xpcall, setmetatable and coroutine.close below
-- are replaced so no script code ever runs unhooked.
local hook
local function fail(message)
  dead = message
  sethook(hook, "", 1)
  error(message, 0)
end
-- The wall-clock deadline (Limits.seconds): os.clock() is cheap and counts at least this
-- thread's CPU, so Python's clock is read at most once per CHECK seconds of it.
local function check()
  if expired() then fail("time limit exceeded") end
end
local function tick()
  local c = clock()
  if c >= next_check then
    next_check = c + CHECK
    check()
  end
end
hook = function()
  if dead then error(dead, 0) end
  used = used + STEP
  if used > budget then fail("instruction limit exceeded") end
  tick()
end
-- C functions that run over a whole string or table do not fire the count hook while they
-- run; called in a tight loop, thousands of them fit between two hooks. They count the bytes
-- they process and check the clock every WORK bytes. Python functions may wait without using
-- CPU (so os.clock() stands still): every one counts as WORK / 16.
local function charge(n)
  work = work + n
  if work >= WORK then
    work = 0
    check()
  end
end
local PYCALL = WORK // 16
local function start(limit)
  used, budget, work, dead = 0, limit, 0, nil
  next_check = clock() + CHECK
  sethook(hook, "", STEP)
end

local function copy(t, skip)
  local c = {}
  for k, v in pairs(t) do if not (skip and skip[k]) then c[k] = v end end
  return c
end

-- Hooks are per thread and a new coroutine's Lua-side hook is unset, so every coroutine the
-- script makes gets the same counting hook.
local co = copy(coroutine)
co.create = function(f) local c = cocreate(f); sethook(c, hook, "", STEP); return c end
co.wrap = function(f)
  local c = co.create(f)
  return function(...)
    local r = tpack(coroutine.resume(c, ...))
    if not r[1] then error(r[2], 0) end
    return tunpack(r, 2, r.n)
  end
end
-- A coroutine that died in the hook keeps hooks off; closing it would run its pending __close
-- handlers unhooked. A dead coroutine's pending handlers are dropped instead.
local coclose = coroutine.close
co.close = function(c)
  if costatus(c) == "dead" then return true end
  return coclose(c)
end

-- xpcall's message handler runs where the error was raised: for the hook's errors, inside the
-- hook with hooks off. Here the handler runs after the protected call has unwound, hooked like
-- any other code. (It no longer sees the failing stack, which scripts cannot inspect anyway.)
local function sandbox_xpcall(f, handler, ...)
  local r = tpack(pcall(f, ...))
  if r[1] then return tunpack(r, 1, r.n) end
  return false, (handler(r[2]))
end

-- Finalizers run with hooks off, at whatever moment the collector picks: none for scripts.
local function sandbox_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not available to scripts", 2)
  end
  return setmetatable(t, mt)
end

local base = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  xpcall = sandbox_xpcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  rawequal = rawequal, rawlen = rawlen, rawget = rawget, rawset = rawset,
  setmetatable = sandbox_setmetatable, getmetatable = getmetatable,
  string = copy(string, {dump = true}), table = copy(table), math = copy(math),
  utf8 = copy(utf8), coroutine = co,
  os = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime},
}
base.unpack = base.table.unpack

-- C functions whose running time is not bounded by memory run without the instruction hook
-- firing, so they get a cost check first.
local srep, smove, sfind, sbyte = string.rep, table.move, string.find, string.byte
local huge = 2e7  -- about 0.1 s of backtracking at worst
base.string.rep = function(s, n, sep)
  if #tostring(s) + #tostring(sep or "") == 0 then return "" end  -- rep("", 1e18) loops 1e18 times
  local r = srep(s, n, sep)
  charge(#r)
  return r
end
base.table.move = function(a1, f, e, t, a2)
  if type(f) == "number" and type(e) == "number" and e - f > 1e7 then
    error("table.move: range too large", 2)
  end
  if type(f) == "number" and type(e) == "number" and e > f then charge(16 * (e - f)) end
  return smove(a1, f, e, t, a2)
end
-- Repetitions in a pattern: `*`, `+`, `-` and `%bxy` (which scans to the end of the subject
-- from every place it is tried); `?` doubles the work at most.
local function pattern_shape(pattern)
  local q, opt, i, n = 0, 0, 1, #pattern
  while i <= n do
    local c = sbyte(pattern, i)
    if c == 37 then  -- '%': an escape, a class, or %b
      if sbyte(pattern, i + 1) == 98 then q = q + 1; i = i + 4 else i = i + 2 end
    elseif c == 42 or c == 43 or c == 45 then q = q + 1; i = i + 1
    elseif c == 63 then opt = opt + 1; i = i + 1
    else i = i + 1 end
  end
  return q, opt
end
-- Lua patterns backtrack: a subject of n bytes and q repetitions costs up to n^(q+1) steps
-- (n^q when anchored), all inside one C call. Refuse matches that could take seconds.
local function pattern_cost(subject, pattern, plain)
  subject, pattern = tostring(subject), tostring(pattern)
  charge(#subject)
  if plain or not sfind(pattern, "[%*%+%-%?%%]") then return end
  local q, opt = pattern_shape(pattern)
  if q + opt == 0 then return end
  local n = #subject + 1
  local exponent = q + (sfind(pattern, "^%^") and 0 or 1)
  if n ^ exponent * 2 ^ opt > huge then
    error(("pattern too costly for a %d-byte subject (%d repetitions); use a plain find or a shorter subject")
      :format(#subject, q), 3)
  end
end
for _, name in ipairs({"find", "match", "gmatch", "gsub"}) do
  local f = string[name]
  base.string[name] = function(s, p, a, b)
    pattern_cost(s, p, name == "find" and b)
    return f(s, p, a, b)
  end
end
-- The other whole-string functions: charged by the size of their subject (or result).
local sformat = string.format
base.string.format = function(fmt, ...)
  local r = sformat(fmt, ...)
  charge(#r)
  return r
end
for _, name in ipairs({"byte", "lower", "upper", "reverse", "sub", "unpack"}) do
  local f = string[name]
  base.string[name] = function(s, ...)
    if type(s) == "string" then charge(#s) end
    return f(s, ...)
  end
end
for _, name in ipairs({"len", "codepoint", "offset", "codes"}) do
  local f = utf8[name]
  base.utf8[name] = function(s, ...)
    if type(s) == "string" then charge(#s) end
    return f(s, ...)
  end
end
local tconcat, tsort, tinsert, tremove = table.concat, table.sort, table.insert, table.remove
base.table.concat = function(t, ...)
  local r = tconcat(t, ...)
  charge(#r + 16 * #t)
  return r
end
base.table.sort = function(t, ...)
  charge(64 * #t)
  return tsort(t, ...)
end
-- insert/remove at the front shift the whole table.
base.table.insert = function(t, ...)
  if select("#", ...) > 1 then charge(16 * #t) end
  return tinsert(t, ...)
end
base.table.remove = function(t, ...)
  if select("#", ...) > 0 then charge(16 * #t) end
  return tremove(t, ...)
end

-- Strings index `string` through their shared metatable: point it at the sandbox copy and hide it.
local smt = getmetatable("")
smt.__index = base.string
smt.__metatable = false

-- Python functions answer (true, results...) or (false, message): an exception raised into
-- Lua would hand the script a Python object as the error value of its pcall().
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
for name, fn in pairs(py) do
  base[name] = function(...) charge(PYCALL) return unwrap(fn(...)) end
end
base.print = base.echo

-- stat() batches in Lua: one crossing into Python per run instead of one per call (P7). When
-- the call log is recorded (scriptTest), each call goes to Python as it happens instead.
local stats, record = {}, false
local py_stat = py.stat
local function key_part(v, what)
  local t = type(v)
  if t == "number" then v = tostring(v) elseif t ~= "string" then error("stat " .. what .. " must be a string", 3) end
  if #v > 255 or sfind_plain(v, "\0") then error("stat keys must be at most 255 bytes, without NUL", 3) end
  return v
end
if py_stat then
  base.stat = function(k1, k2, k3, n)
    k1 = key_part(k1, "key1")
    k2, k3 = key_part(k2 or "", "key2"), key_part(k3 or "", "key3")
    if n == nil then n = 1 end
    if math.type(n) ~= "integer" or n < 1 then error("stat count must be a whole number, 1 or more", 2) end
    if #k1 == 0 then error("stat key1 must not be empty", 2) end
    if record then return unwrap(py_stat(k1, k2, k3, n)) end
    local key = k1 .. "\0" .. k2 .. "\0" .. k3
    stats[key] = (stats[key] or 0) + n
  end
end

-- Decisions a handler returns.
base.accept = function() return {decision = "accept"} end
base.reject = function(code, text) return {decision = "reject", code = code, text = text} end
base.defer = function(code, text) return {decision = "defer", code = code, text = text} end
base.quarantine = function(name) return {decision = "quarantine", quarantine = name or "default"} end
base.delete = function() return {decision = "delete"} end
base.deliver = function(transport, opts)
  opts = opts or {}
  return {decision = "deliver", transport = transport, nexthop = opts.nexthop, source_ip = opts.source_ip}
end

local function header(msg, name)
  local want = string.lower(name)
  for _, h in ipairs(msg.headers) do
    if string.lower(h.name) == want then return h.value end
  end
  return nil
end
base.message_header = header

local G = setmetatable({}, {__index = base})
local chunk = nil
local handlers = {}

local control = {}

function control.compile(text, name)
  local fn, err = load(text, "=" .. name, "t", G)
  if not fn then return false, err end
  chunk = fn
  return true, ""
end

function control.init(limit)
  start(limit)
  chunk()
  if dead then error(dead, 0) end  -- a coroutine hit a limit and the main thread ended first
  sethook()
  local found = {}
  for _, n in ipairs({"connect", "auth", "mail_from", "rcpt_to", "data", "pre_delivery", "post_delivery"}) do
    if type(rawget(G, n)) == "function" then found[#found + 1] = n end
  end
  return found
end

-- One run: a fresh global table over the script's own globals, so what a handler assigns to
-- globals is gone when the run ends; `session` is a global as well as an argument.
function control.run(limit, name, vars, ...)
  local env = setmetatable({session = vars}, {__index = G})
  setupvalue(chunk, 1, env)
  start(limit)
  local fn = G[name]
  if name == "data" then
    local msg = select(2, ...)
    msg.header = header
  end
  local result = fn(...)
  if dead then error(dead, 0) end
  sethook()
  local counted = stats
  stats = {}
  return result, counted
end

function control.take_stats()
  local counted = stats
  stats = {}
  return counted
end

function control.record(on)
  record = on
end

-- A C function: calling it from Python runs no Lua instruction, so a hook stuck at "fail on
-- every instruction" cannot stop it from clearing that hook.
control.unhook = sethook

function control.reset()
  if chunk then setupvalue(chunk, 1, G) end
end

function control.used()
  return used
end

return control
"""

# Globals removed from the runtime once the bootstrap has run.
REMOVED_GLOBALS = (
    "os", "io", "require", "package", "debug", "load", "loadstring", "dofile", "loadfile",
    "collectgarbage", "python", "_G",
)
