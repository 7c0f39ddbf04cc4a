-- Argo CD health check for streamingtoken.io/StreamingToken. Install it in argocd-cm under
--   resource.customizations.health.streamingtoken.io_StreamingToken
-- (see the README). It reads the operator's conditions:
--   Suspended    spec.suspend is set
--   Degraded     Stalled=True (a blocked rotation, a spec or source only a person can fix)
--                or Ready=False; the message carries the reason
--   Progressing  the operator has not seen the latest spec, or a rotation is running
--   Healthy      Ready=True and nothing in progress
local hs = {}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is set: nothing is repaired or rotated"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "the operator has not observed the latest spec yet"
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. ready.message
  return hs
end
if obj.status.rotation ~= nil then
  hs.status = "Progressing"
  hs.message = "rotation " .. obj.status.rotation.id .. " is in phase " .. obj.status.rotation.phase
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = "waiting for the operator"
return hs
