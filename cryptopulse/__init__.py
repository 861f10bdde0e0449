"""CryptoPulse: real-time cryptocurrency sentiment intelligence.

``cryptopulse.core`` is the ground floor every stage builds on; ``cryptopulse.cli`` and
``cryptopulse.platform`` are the roof that only assembles the stages.
"""

from cryptopulse.core.version import __version__

__all__ = ["__version__"]
