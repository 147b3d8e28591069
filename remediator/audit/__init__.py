"""The audit trail: the event model and its hash chain, how an event is recorded (redacted,
sealed, routed to the outbox) and the catalogue of event types.

The store imports it (appending is part of every write transaction); it may import the
configuration's vocabulary and the base modules. The chain's verifier, which reads a store, is
``remediator.engine.engine.verifier``.
"""
