"""The stage cache: work already done, reused (``sweep|run --cache``, ``--refresh-cache``).

A stage's key (:mod:`pipeline.cache.key`) hashes what its result depends on: the content of
every file it reads, its parameters, the code that computes it and the numeric libraries'
versions. An entry (:mod:`pipeline.cache.store`) keeps the stage's output and the content
of the files it wrote, under ``<artifacts root>/.cache/``, checked whole when read: a
damaged or missing entry is a miss, never served. :mod:`pipeline.cache.stages` says what
each stage reads and writes, and serves or stores a task's entry; the worker's tasks call
it around the stage.
"""
