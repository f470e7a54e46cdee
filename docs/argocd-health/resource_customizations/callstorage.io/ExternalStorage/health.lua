-- Argo CD health of callstorage.io/ExternalStorage, from the operator's kstatus
-- conditions, by the rules of callstorage.api.readiness (same case table in the tests):
--   1. no Ready condition yet, or status.observedGeneration or Ready's observedGeneration
--      is not metadata.generation (or Ready's reason is Pending): Progressing
--   2. Suspended=True (spec.suspend: validation paused): Suspended
--   3. Stalled=True (a person must act: credentials, bucket, an endpoint name that does
--      not resolve, ...): Degraded, with Stalled's reason and message
--   4. Ready=True: Healthy
--   5. otherwise (validating, or a failure the operator retries): Progressing
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
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
local status = obj.status or {}
local ready = condition(status, "Ready")

-- 1. nothing yet, or a status or Ready condition written for an older generation
if ready == nil then
  hs.status = "Progressing"
  hs.message = "not validated yet; is the callstorage operator running?"
  return hs
end
local seen = nil
if generation ~= nil then
  if status.observedGeneration ~= nil and status.observedGeneration ~= generation then
    seen = status.observedGeneration
  elseif ready.observedGeneration ~= nil and ready.observedGeneration ~= generation then
    seen = ready.observedGeneration
  end
end
if seen ~= nil then
  hs.status = "Progressing"
  hs.message = "generation " .. tostring(generation) .. " not observed yet (last: " .. tostring(seen) .. ")"
  return hs
end
if ready.reason == "Pending" then
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

-- 2. spec.suspend: validation paused
local suspended = condition(status, "Suspended")
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(suspended)
  return hs
end

-- 3. a person must act: retrying alone will not help
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- 4. and 5.
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
