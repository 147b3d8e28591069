"""Event-Driven Ansible source plugins of the peer benchmark (loaded with --source-dir)."""
