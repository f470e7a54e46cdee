-- Argo CD health of callstorage.io/ExternalStorage. The operator publishes kstatus
-- conditions; this reads them in the same order as callstorage's own readiness rules:
--   Progressing  no status yet, or status or Ready not yet for metadata.generation
--   Suspended    Suspended=True (spec.suspend: validation paused)
--   Degraded     Stalled=True: fails for a reason a person must fix (credentials, bucket,
--                a name that does not resolve, ...); retrying alone will not help
--   Healthy      Ready=True
--   Progressing  otherwise (validating, or a failure the operator retries with backoff)
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": " .. c.message
    else
      text = c.message
    end
  end
  return text
end

local generation = obj.metadata.generation
local status = obj.status
local ready = condition(status, "Ready")

if status == nil or status.observedGeneration ~= generation or ready == nil
    or ready.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local suspended = condition(status, "Suspended")
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(suspended)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
