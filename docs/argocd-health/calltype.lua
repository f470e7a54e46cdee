-- Argo CD health check for callstorage.io/CallType (resource.customizations.health).
-- Reads what kstatus reads: the Ready condition and observedGeneration.
--   Progressing  no status yet, a newer generation not yet resolved, or its storage is
--                not ready yet (that ExternalStorage shows why; not counted twice)
--   Degraded     Ready=False for any other reason, e.g. StorageNotFound (a wrong name)
--   Healthy      Ready=True for the current generation
local hs = {}

-- The storage exists but is not (yet) ready: its own health says why.
local transient = {
  StorageNotReady = true,
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

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to resolve the storage"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to resolve generation " .. generation
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
  hs.message = "Waiting for the operator to resolve generation " .. generation
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
