"""The flow's definition: its shape (flow), the stages' code (stages), the names
they give files and seeds (naming) and the Celery canvas built from them (canvas).
These files, and only these, make a run's flow version (see :mod:`pipeline.ledger.versions`);
the stage cache's code digest widens them to the stages' helpers (:mod:`pipeline.cache.key`).
"""
