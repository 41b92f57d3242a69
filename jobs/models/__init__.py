"""Models of the jobs app, one module per model family."""

from jobs.models.job import Job, JobStatus

__all__ = ["Job", "JobStatus"]
