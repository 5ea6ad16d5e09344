"""What a user asks: the registry, the workflow shape, shared checks, one module per workflow."""
