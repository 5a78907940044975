"""Celery workers: the bead loop tasks and the periodic maintenance tasks."""
