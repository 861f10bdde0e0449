"""FastAPI over the Redis materialized views (``create_app`` in :mod:`api.main`) and the dashboard."""
