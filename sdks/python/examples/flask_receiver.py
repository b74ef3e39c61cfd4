"""The same receiver with Flask (WSGI): run with BONAFIDE_URL and PUBLIC_URL set,
`flask --app flask_receiver run --port 3000`."""

import os

from flask import Flask

from bonafide import ReceiverConfig
from bonafide.flask import current_agent
from bonafide.wsgi import BonafideWSGIMiddleware


def make_app(registry: str, public_url: str, api_key: str | None = None) -> Flask:
    config = (
        ReceiverConfig.online(registry, api_key, public_base_url=public_url)
        if api_key
        else ReceiverConfig.offline(registry, public_base_url=public_url)
    )
    app = Flask(__name__)
    app.wsgi_app = BonafideWSGIMiddleware(app.wsgi_app, config=config)  # type: ignore[method-assign]

    @app.get("/hello")
    def hello() -> dict[str, object]:
        agent = current_agent()
        return {"hello": agent.name, "agent": agent.agent_id, "delegation": list(agent.delegation)}

    return app


if "BONAFIDE_URL" in os.environ:
    app = make_app(os.environ["BONAFIDE_URL"], os.environ["PUBLIC_URL"], os.environ.get("BONAFIDE_API_KEY"))
