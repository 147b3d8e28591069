"""The whole chain on loopback: a leaking container, Prometheus, Alertmanager, remediator."""
