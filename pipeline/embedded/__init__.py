"""The zero-setup stack the CLI starts on a laptop: an embedded Redis and worker (stack),
the supervisor that keeps them up (supervisor), detached processes and their pid files
(detached), and the connection the CLI makes to a broker, embedded or given (connect).
"""
