-- Set the check annotation to the current time (UTC): any new value asks the operator
-- for a check, answered in status.lastCheck.requestedAt with the same value.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["callstorage.io/check-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
