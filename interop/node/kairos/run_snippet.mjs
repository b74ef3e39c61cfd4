// Runs KairosAI's integration snippet (integration_snippet.mjs) as a service would:
// one incoming request whose `X-Agent-Token` is AGENT_TOKEN. Prints one JSON line:
// the status and body the snippet answered and every line it logged.
import { handler } from './integration_snippet.mjs'

const logged = []
const log = console.log
console.log = (...args) => logged.push(args.map((a) => JSON.stringify(a)).join(' '))

const req = { headers: { 'x-agent-token': process.env.AGENT_TOKEN } }
let answered = null
const res = {
  statusCode: 200,
  status(code) { this.statusCode = code; return this },
  json(body) { answered = { status: this.statusCode, body }; return this },
}
try {
  await handler(req, res)
} finally {
  console.log = log
}
console.log(JSON.stringify({ answered, logged }))
