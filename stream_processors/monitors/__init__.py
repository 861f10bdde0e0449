"""The stream worker's timers: they watch the stream and never stop it (a stall excepted).

| timer | every | module |
|---|---|---|
| ``consumer_lag`` | 5 s | :mod:`.lag`: lag per source partition, and the stall watchdog |
| ``data_quality`` | 10 s | :mod:`.quality`: closed data-quality windows, their alerts |
| ``model_drift`` | 30 s | :mod:`.drift`: closed prediction-drift windows, their alerts |
| ``heartbeat`` | 2 s | :mod:`.heartbeat`: tells a successor this worker was alive |

The fifth timer, ``model_poll`` (the hot swap), belongs to the score agent
(:mod:`stream_processors.agents.score`). Every timer runs on every worker
(``on_leader=False``): each worker watches the partitions it owns. Timer bodies take no
parameters, because faust passes the app to a timer function that takes one.
"""
