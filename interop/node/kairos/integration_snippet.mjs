// KairosAI Identity's "Integration" snippet for service developers, copied from its
// product page ("For service developers: Accept verified AI agents on your
// platform", identity.kairosaistudio.com; the copy Bonafide's issue 21 was written
// from). Only two things changed, as a migrating user would change
// them: the URL (KairosAI's host → the Bonafide registry under test) and the key
// (`YOUR_API_KEY` → a Bonafide receiver key). The snippet is the body of a service's
// request handler; it is wrapped in `handler(req, res)` so it can run, and its
// `console.log` lines print what it read.
//
// Environment: BONAFIDE_URL (the registry), YOUR_API_KEY (a receiver key).

const BONAFIDE_URL = process.env.BONAFIDE_URL // changed: the registry's base URL
const YOUR_API_KEY = process.env.YOUR_API_KEY // changed: a Bonafide receiver key

export async function handler(req, res) {
// ---- the snippet, as published (only the URL changed) ----
// Agent sends its token from env vars on every request
// In the agent's code: process.env.AGENT_TOKEN
// In the service's code:

const agentJwt = req.headers['x-agent-token']  // sent by the agent

const response = await fetch(
  `${BONAFIDE_URL}/api/v1/verify`,
  {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${YOUR_API_KEY}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({
      token: agentJwt,           // the agent's AGENT_TOKEN value
      target_resource: 'your-service',
      scopes_requested: ['read:data'],
    }),
  }
)

const { allowed, agent } = await response.json()

if (!allowed) {
  return res.status(403).json({ error: 'Agent not authorized' })
}

// Agent is verified — proceed
console.log(agent.did)          // did:kairos:abc123
console.log(agent.active_scopes) // ['read:data']
// ---- end of the snippet ----
return res.status(200).json({ ok: true })
}
