"""Worker environments: which queues each kind of worker consumes and what it needs installed."""
