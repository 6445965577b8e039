-- Serve thaw calls from a Lua program running as a thaw guest (the guest
-- side of include/thaw/program.h; doc/guest-abi.md "Linux programs").
-- Plain Lua 5.4, no C module:
--
--   local thaw = require("thaw_program")
--   thaw.serve({ upper = function(input) return input:upper() end })
--
-- A function takes the call's input as a string and returns a string (or
-- nil). An error fails the call with its message. `hooks.before_snapshot`
-- and `hooks.after_restore` run like the Python module's.
local M = {}

local REQUEST_MAGIC = 0x51524854
local REPLY_MAGIC = 0x50524854
local NO_SUCH_FUNCTION = 0x7FFFFFFF
local FLAG_RESTORED = 1

local input = assert(io.open("/dev/fd/3", "rb"))
local output = assert(io.open("/dev/fd/3", "wb"))
output:setvbuf("full")

local function read_exact(n)
  if n == 0 then return "" end
  local data = input:read(n)
  assert(data and #data == n, "thaw request channel closed")
  return data
end

local function reply(status, data)
  data = data or ""
  output:write(string.pack("<I4I4I8", REPLY_MAGIC, status, #data), data)
  output:flush()
end

function M.serve(functions, hooks)
  hooks = hooks or {}
  while true do
    local magic, kind, flags, name_size, input_size =
        string.unpack("<I4I2I2I4I4", read_exact(16))
    assert(magic == REQUEST_MAGIC, "thaw: bad request magic")
    local name = read_exact(name_size)
    local data = read_exact(input_size)
    if flags & FLAG_RESTORED ~= 0 then
      math.randomseed()  -- fresh seed in the restored instance
      if hooks.after_restore then hooks.after_restore() end
    end
    if kind == 1 then
      local ok, err = pcall(hooks.before_snapshot or function() end)
      if ok then reply(0) else reply(1, tostring(err)) end
    else
      local fn = functions[name]
      if fn == nil then
        reply(NO_SUCH_FUNCTION)
      else
        local ok, result = pcall(fn, data)
        if ok then reply(0, result and tostring(result) or "")
        else reply(1, tostring(result)) end
      end
    end
  end
end

return M
