from __future__ import annotations

from ..features import Feature
from .service import retention_housekeeping

FEATURE = Feature(name="retention", housekeeping=[retention_housekeeping])
