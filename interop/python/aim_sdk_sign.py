"""Signs requests exactly as aim-sdk 2.0.3 (aim_sdk/client.py) does, for the server
tests of Bonafide's AIM surface: Python's own `json.dumps` and PyNaCl, not Bonafide's
code. Prints one JSON document on stdout.

    verification SEED AGENT CAPABILITY RESOURCE_JSON CONTEXT_JSON [TIMESTAMP]
        the body of POST /api/v1/sdk-api/verifications (AIMClient._decide_capability)
    poll SEED AGENT VERIFICATION_ID [UNIX_TS]
        the headers of GET /api/v1/sdk-api/verifications/{id} (_wait_for_approval)
    register SEED AGENT CAPABILITY [UNIX_TS]
        {"headers", "body"} of POST .../capabilities/register (_make_request)

SEED is the agent's 32-byte Ed25519 seed, standard base64.
"""

import base64
import json
import sys
import time
from datetime import datetime

from nacl.encoding import Base64Encoder
from nacl.signing import SigningKey


def key(seed_b64):
    return SigningKey(base64.b64decode(seed_b64))


def verification(seed, agent_id, capability, resource_json, context_json, timestamp=None):
    sk = key(seed)
    resource = json.loads(resource_json)
    context = json.loads(context_json)
    timestamp = timestamp or datetime.utcnow().isoformat() + "Z"
    signature_payload = {
        "action_type": capability,
        "agent_id": agent_id,
        "context": context or {},
        "resource": resource,
        "timestamp": timestamp,
    }
    message = json.dumps(signature_payload, sort_keys=True, separators=(", ", ": "))
    signature = base64.b64encode(sk.sign(message.encode("utf-8")).signature).decode("utf-8")
    return {
        "agentId": agent_id,
        "capability": capability,
        "resource": resource,
        "context": context or {},
        "timestamp": timestamp,
        "signature": signature,
        "publicKey": sk.verify_key.encode(encoder=Base64Encoder).decode("utf-8"),
    }


def poll(seed, agent_id, vid, ts=None):
    ts = ts or str(int(time.time()))
    canonical = f"GET\n/api/v1/sdk-api/verifications/{vid}\n{agent_id}\n{ts}"
    signature = base64.b64encode(key(seed).sign(canonical.encode("utf-8")).signature).decode("utf-8")
    return {"X-AIM-Agent-ID": agent_id, "X-AIM-Timestamp": ts, "X-AIM-Signature": signature}


def register(seed, agent_id, capability, ts=None):
    sk = key(seed)
    ts = ts or str(int(time.time()))
    endpoint = f"/api/v1/sdk-api/agents/{agent_id}/capabilities/register"
    data = {
        "capabilityType": capability,
        "description": f"Registered capability: {capability}",
        "riskLevel": "medium",
    }
    body = json.dumps(data, sort_keys=True)
    message = "\n".join(["POST", endpoint, ts, body])
    signature = Base64Encoder.encode(sk.sign(message.encode("utf-8")).signature).decode("utf-8")
    headers = {
        "X-Agent-ID": agent_id,
        "X-Signature": signature,
        "X-Timestamp": ts,
        "X-Public-Key": sk.verify_key.encode(encoder=Base64Encoder).decode("utf-8"),
        "Content-Type": "application/json",
    }
    return {"headers": headers, "body": body}


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    out = {"verification": verification, "poll": poll, "register": register}[kind](*args)
    print(json.dumps(out))
