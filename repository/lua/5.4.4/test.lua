local input = io.read("a")
local t = {"O", "K"}
if input ~= nil and arg ~= nil then print(table.concat(t)) end
