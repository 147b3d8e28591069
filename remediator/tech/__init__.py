"""One module per technology, the plumbing shared by its actions (remediator/actions/) and its
health checks (remediator/checks/): engine and connection calls, secret-free error details."""
