"""The worker side: the stage tasks (tasks) and what each does when it starts (taskstart),
the files a task reads and writes checked against the run record (taskfiles), the capture
of printed lines into the run's log (logcapture), the run id and task key on every worker
log line (logcontext), the worker's record of its queues and heartbeat (liveness), how a
worker is started (start), the warning when Redis persists nothing (redis_checks), and
the Celery/kombu extensions we load into it (consumer, kombu_redis: reclaim by heartbeat).
"""
