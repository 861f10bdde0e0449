"""Alert delivery: user subscriptions, signed webhooks with retries, and the Alertmanager sink.

Alerts from the Spark job (sentiment shifts, volume spikes) and from Prometheus through
Alertmanager (model drift, data quality, service health) meet on the alerts topic; this
stage delivers each one to every matching subscription.
"""
