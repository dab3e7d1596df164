"""Feature definitions shared by training and serving.

Training builds its feature matrices with the same functions the service calls per request, so
the two cannot drift apart. This package depends on numpy only.
"""
