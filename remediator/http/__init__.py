"""The HTTP layer: the Starlette app and its lifespan, the routes, authentication of requests,
rate limits, the webhook's fast path and the OpenAPI document.

Thin: parse, validate, authorise, persist or call the engine, answer. The only package that
imports Starlette or uvicorn. May import everything below it (runtime, engine, families, store,
audit, config, base modules); nothing imports it but ``remediator.cli``.
"""
