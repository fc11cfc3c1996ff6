"""The pipeline: stages, flow shape, canvas, tasks and the run ledger."""
