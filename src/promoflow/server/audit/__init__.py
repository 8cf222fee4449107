"""The audit log: an append-only record of every change, written in the change's own transaction."""

from .actor import SYSTEM, Actor, ActorKind
from .service import diff, entry_values, plain, record

__all__ = ["SYSTEM", "Actor", "ActorKind", "diff", "entry_values", "plain", "record"]
