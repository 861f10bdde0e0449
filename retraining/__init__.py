"""The retraining stage: triggers, the supervised scheduler service and ``cryptopulse retrain``.

A stage like the producers or the API: it may import ``core``, ``schemas``, ``scoring``,
``model_export`` and ``views``, never another stage. Training itself always runs in a child
process (``cryptopulse train``), so the scheduler stays small and survives a failed run.
"""
