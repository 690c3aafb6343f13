"""Lifecycle jobs: one module per kind answers "who is due as of ``now``, with what message"
and declares the kind once as its ``JOB`` (:class:`bot.jobs.base.Job`), collected by
:mod:`bot.jobs.registry`; ``runner`` marks and enqueues, ``outbox`` delivers, ``scheduler``
runs them on time.
"""
