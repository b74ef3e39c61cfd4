"""FastAPI/Starlette helpers: `Depends(verified_agent)` gives the handler the agent the
middleware verified (a route without the middleware answers 401, never an
unauthenticated pass). Imports starlette: install FastAPI or Starlette to use it."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from .asgi import agent_of
from .receiver import VerifiedAgent


def verified_agent(conn: HTTPConnection) -> VerifiedAgent:
    """The verified agent of this request (FastAPI dependency)."""
    agent = agent_of(conn.scope)
    if agent is None:
        raise HTTPException(401, "UNAUTHENTICATED: this route is not behind BonafideMiddleware")
    return agent
