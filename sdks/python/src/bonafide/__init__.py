"""Bonafide SDK for Python: verify AI agents' tokens and their proofs of possession
(offline with the registry's published keys and status lists, or online through
`POST /v1/verify`), and make those proofs on the agent's side."""

__version__ = "0.1.0"
