-- Argo CD health check for callstorage.io/ExternalStorage (resource.customizations.health).
-- Reads what kstatus reads: the Ready condition and observedGeneration.
--   Suspended    spec.suspend is true (the operator keeps the config, stops validating)
--   Progressing  no status yet, a newer generation not yet validated, being deleted
--                (held by CallTypes that still use it), or a failure the operator
--                retries by itself (endpoint unreachable, timeout)
--   Degraded     Ready=False for a reason a person must fix (credentials, bucket, ...)
--   Healthy      Ready=True for the current generation
local hs = {}

-- Failures that go away without anyone changing the object: the operator retries them
-- with backoff. Every other Ready=False reason needs a change by a person.
local transient = {
  EndpointUnreachable = true,
  Timeout = true,
  Validating = true,
  Pending = true,
}

local function readyCondition(status)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = obj.metadata.generation

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Validation is suspended (spec.suspend)"
  return hs
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted; waits until no CallType uses this storage"
  return hs
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate the storage"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate generation " .. generation
  return hs
end

local ready = readyCondition(status)
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate generation " .. generation
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif ready.status == "False" and not transient[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = describe(ready)
end
return hs
