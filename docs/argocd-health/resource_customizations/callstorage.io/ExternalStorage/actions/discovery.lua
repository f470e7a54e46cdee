-- Resource actions of callstorage.io/ExternalStorage.
--   check  ask the operator to write a new test file into the storage now; the result
--          shows in status.lastCheck (and as an event), like `callstorage check`
local actions = {}
actions["check"] = {["disabled"] = false, ["displayName"] = "Check (write a test file)"}
return actions
