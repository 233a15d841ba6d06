"""The workloads, W1 to W7. Each module has ``run(ctx) -> list[Series]``."""
