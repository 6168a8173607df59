"""The error `oreal plan` reports as bad input (the CLI exits 2 with its message)."""


class PlanInputError(ValueError):
    """The plan cannot be computed: no architecture for the model, or an impossible placement."""
