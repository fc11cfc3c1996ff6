"""Where a run's files live: the store behind an artifacts root, a local directory or
an fsspec URL such as ``s3://bucket/prefix`` (store), and a run's folder in it, written
atomically and read back checked (rundir).
"""
