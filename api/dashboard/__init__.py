"""Streamlit dashboard over the CryptoPulse API (``cryptopulse dashboard``); reads the API only."""
