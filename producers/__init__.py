"""Producers: Reddit, news, prices and the offline replay, each into its raw Kafka topic.

:mod:`producers.runner` runs one source (``run``, ``build_source``); :mod:`producers.base`
holds what the connectors share; ``cryptopulse produce`` (:mod:`producers.cli`) is the CLI.
"""
