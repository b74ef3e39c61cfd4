"""Flask helper: `current_agent()` in a view behind `BonafideWSGIMiddleware` (a view
without it gets a 401, never an unauthenticated pass). Imports flask."""

from __future__ import annotations

from flask import abort, request

from .receiver import VerifiedAgent
from .wsgi import agent_of


def current_agent() -> VerifiedAgent:
    agent = agent_of(request.environ)
    if agent is None:
        abort(401, "UNAUTHENTICATED: this view is not behind BonafideWSGIMiddleware")
    return agent
