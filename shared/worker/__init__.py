"""The task queue and its jobs, thin: they call the domain packages."""
