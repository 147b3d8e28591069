"""The engine: what happens to a stored alert — decide (patterns, playbook, target), guard,
claim, run the steps with retries and breakers, verify, record, escalate — and the background
tasks around it (worker, health monitor, escalator, reconciliation, retention, outbox delivery).

Domain code with an injected clock; no Starlette. May import config, the families (actions,
checks, notifiers), the store, audit and the base modules; never the HTTP layer or the runtime.
"""
