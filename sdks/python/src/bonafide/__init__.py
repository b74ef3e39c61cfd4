"""Bonafide SDK for Python: verify AI agents' tokens and their proofs of possession
(offline with the registry's published keys and status lists, or online through
`POST /v1/verify`), and make those proofs on the agent's side."""

from .agent import DPoPAuth, MessageSignatureAuth, RegistryClient
from .errors import BonafideError, KeyError_, RegistryError, TokenError
from .keys import PrivateKey, PublicKey
from .policy import Decision, Policy, PolicyError
from .receiver import AsyncReceiver, Receiver, ReceiverConfig, Rejection, VerifiedAgent
from .status import StatusCheck, StatusListConfig, TrustedLists

__version__ = "0.1.0"

__all__ = [
    "AsyncReceiver",
    "BonafideError",
    "DPoPAuth",
    "Decision",
    "KeyError_",
    "MessageSignatureAuth",
    "Policy",
    "PolicyError",
    "PrivateKey",
    "PublicKey",
    "Receiver",
    "ReceiverConfig",
    "RegistryClient",
    "RegistryError",
    "Rejection",
    "StatusCheck",
    "StatusListConfig",
    "TokenError",
    "TrustedLists",
    "VerifiedAgent",
    "__version__",
]
