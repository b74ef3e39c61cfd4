"""An agent written with aim-sdk (AIM's Python SDK, 2.0.3 from PyPI, unchanged) the way
AIM's documentation writes one: `secure(name)` and `@agent.perform_action`. Nothing in
it knows about Bonafide: the registry's URL and the agent's key come from the SDK's
own credentials file, which `bonafide aim-credentials` wrote.

    python aim_sdk_agent.py NAME PHASE

PHASE `before`: an action the agent was granted (`orders:read`) and one it was not
(`orders:refund`); `after` (the agent revoked): the granted one again. Prints one line
`RESULT <json>`: what each call returned or raised, which function bodies ran, and
the answers to the SDK's own reports after each call (`result`, `execution-status`),
seen through the public `requests` response hook: observed, not changed.
"""

import json
import sys
from urllib.parse import urlparse

from aim_sdk import secure


def attempt(fn):
    try:
        return {"returned": fn()}
    except Exception as e:  # the SDK's own exception types, reported by name
        return {"raised": type(e).__name__, "message": str(e)}


def main():
    name, phase = sys.argv[1], sys.argv[2]
    agent = secure(name)
    ran = []
    reports = []

    def seen(response, *args, **kwargs):
        path = urlparse(response.url).path
        if path.endswith(("/result", "/execution-status")):
            reports.append([path.rsplit("/", 1)[1], response.status_code])

    agent.session.hooks["response"].append(seen)

    @agent.perform_action(capability="orders:read", resource="orders/1")
    def read_orders():
        ran.append("orders:read")
        return "3 orders"

    @agent.perform_action(capability="orders:refund", resource="orders/1")
    def refund_order():
        ran.append("orders:refund")
        return "refunded"

    result = {"agent_id": agent.agent_id, "read": attempt(read_orders)}
    if phase == "before":
        result["refund"] = attempt(refund_order)
    result["ran"] = ran
    result["reports"] = reports
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
