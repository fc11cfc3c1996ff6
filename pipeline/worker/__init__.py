"""The worker side: the stage tasks (tasks) and what each does when it starts (taskstart),
the capture of printed lines into the run's log (logcapture), the worker's record of
its queues (liveness), how a worker is started (start), and the Celery/kombu
extensions we load into it (consumer, kombu_redis).
"""
