"""A file holding a secret (an API token, the Slack bot token, Prometheus's bearer token or
password), refused as ssh refuses a private key.

When the file belongs to the user remediator runs as, no one else may have any permission on it
(mode 0600 or 0400); whoever owns it, others may not write it (whoever could write it could plant
a token of their own). A file another user owns (root's ``root:remediator 0640``, a Kubernetes
Secret, a compose secret bind-mounted from the host) is otherwise protected by that owner's
choice. A leaf: it imports nothing of remediator, so the notifiers and the engine use it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def permission_problem(path: Path, *, uid: int | None = None) -> str | None:
    """Why the secret file at ``path`` may not be used (its permissions), or None; a file that
    cannot be read is left to the reading. ``uid`` is the user remediator runs as."""
    try:
        found = path.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(found.st_mode)
    owner = os.geteuid() if uid is None else uid
    if found.st_uid == owner and mode & 0o077:
        return (
            f"{path}: permissions {mode:04o} are too open: a file holding a secret must be "
            f"readable by its owner only; run `chmod 600 {path}`"
        )
    if mode & 0o002:
        return f"{path}: anyone may write it (permissions {mode:04o}); run `chmod o-w {path}`"
    return None
