"""How the registry refuses: one line that says what and why, caught by the CLI."""

from __future__ import annotations


class RegistryError(Exception):
    """A registry request that cannot be honoured (unknown model, forbidden transition, ...)."""


class DecisionConflict(RegistryError):
    """Another decision was committed to the lineage after this one's state was read."""


class ModelNotFound(RegistryError):
    pass
