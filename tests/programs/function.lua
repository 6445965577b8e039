-- A Lua function for the program tests, served through thaw_program.lua.
local thaw = require("thaw_program")
local greeting = "hello from lua"
print("lua init done")
io.stdout:flush()
thaw.serve({
  greet = function(input) return greeting .. ", " .. input end,
  sum = function(input)
    local total = 0
    for n in input:gmatch("%d+") do total = total + tonumber(n) end
    return tostring(total)
  end,
  fail = function() error("lua says no") end,
})
