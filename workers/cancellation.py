"""A stop request for the job this process is running, set by RQ's stop-job command."""

import threading

stop_requested = threading.Event()


class JobStopped(Exception):
    """Raised between batches when the job was asked to stop; RQ then marks it stopped, not failed."""
