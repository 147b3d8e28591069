"""The recording policy of a configuration: which secrets to redact, whether to seal free text,
and where notifications go. Built at start-up and again on every configuration change."""

from __future__ import annotations

import os

from remediator.audit.recording import Recording, cipher_from_env
from remediator.config.auth import Authenticator
from remediator.config.model import Config
from remediator.engine.approval_links import link_signer
from remediator.engine.notifications import build_router
from remediator.errors import ConfigError
from remediator.redaction import configured_secrets


def recording_for(config: Config, authenticator: Authenticator) -> Recording:
    try:
        cipher = cipher_from_env(config.audit.encryption_key_env, os.environ)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    return Recording(
        secrets=configured_secrets(config, authenticator.secrets, os.environ),
        cipher=cipher,
        route=build_router(
            config,
            links=link_signer(
                secret_env=config.approvals.link_secret_env,
                public_url=config.approvals.public_url,
                env=os.environ,
            ),
        ),
    )
