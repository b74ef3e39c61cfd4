"""A receiver API built with FastAPI: every request must come from an agent the registry
vouches for (run: BONAFIDE_URL=http://127.0.0.1:8080 PUBLIC_URL=http://127.0.0.1:3000
uvicorn fastapi_receiver:app --port 3000)."""

import os
from typing import Annotated

from fastapi import Depends, FastAPI

from bonafide import ReceiverConfig, VerifiedAgent
from bonafide.asgi import BonafideMiddleware
from bonafide.fastapi import verified_agent


def make_app(registry: str, public_url: str, api_key: str | None = None) -> FastAPI:
    config = (  # offline: the registry's keys and status lists; online: ask it each time
        ReceiverConfig.online(registry, api_key, public_base_url=public_url)
        if api_key
        else ReceiverConfig.offline(registry, public_base_url=public_url)
    )
    app = FastAPI()
    app.add_middleware(BonafideMiddleware, config=config)

    @app.get("/hello")
    def hello(agent: Annotated[VerifiedAgent, Depends(verified_agent)]) -> dict[str, object]:
        return {"hello": agent.name, "agent": agent.agent_id, "delegation": list(agent.delegation)}

    return app


if "BONAFIDE_URL" in os.environ:
    app = make_app(os.environ["BONAFIDE_URL"], os.environ["PUBLIC_URL"], os.environ.get("BONAFIDE_API_KEY"))
