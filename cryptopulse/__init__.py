"""CryptoPulse: real-time cryptocurrency sentiment intelligence."""

__version__ = "0.1.0"
