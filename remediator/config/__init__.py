"""Configuration: the YAML file's pydantic models (targets, patterns, playbooks, steps,
matchers, templates, durations, API tokens), loading and validation, the redacted document, and
the generated reference (``python -m remediator.config.model.docgen``).

Two layers. The leaf vocabulary (``targets``, ``durations``, ``matchers``, ``templates``,
``regex``, ``promql``, ``secretfile``) imports only the base modules, so every layer may use it. The rest
assembles the whole file from what the families declare (each action's step model, each
notifier's section), so it sits above ``actions/``, ``checks/`` and ``notifiers/`` and below the
engine.
"""
