"""Queue recovery actions: resume, requeue_failed, clean_failed, drain_delayed, purge,
restart_workers, on the queues of ``rq``, ``celery`` and ``rabbitmq`` targets.

Each action names one ``queue`` from the target's own ``queues`` (checked by ``check-config``
and again before anything is touched) and dispatches to the target type's backend
(remediator/tech/queues/). The target types an action acts on are those whose backend supports
it; its ``recovery:action`` event carries what it did (``count``, the first ``ids``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from remediator.actions.base import BuiltinAction, GuardedAction, Outcome, StepModel
from remediator.actions.process import ProcessRestart, ProcessRestartAction
from remediator.clients import Clients
from remediator.config.durations import Duration
from remediator.config.targets import QUEUE_NAME_RE, QueueTargetBase, Target, WorkersTargetBase
from remediator.tech.queues import BACKENDS, Refused, Selection, supporting
from remediator.tech.queues.base import owned
from remediator.tech.redis import redis_error

__all__ = ["ACTIONS", "QueueStep", "queue_step_problems"]

MAX_JOBS = "At most this many jobs (messages) in one run."


class QueueStep(StepModel):
    """The fields every queue step has: the queue, one of the target's ``queues``."""

    queue: str = Field(
        pattern=QUEUE_NAME_RE, description="The queue, one of the target's `queues`."
    )


class QueueResume(QueueStep):
    action: Literal["queue.resume"] = Field(
        description="Resume consumption of the queue (rq: `rq resume`; celery: `add_consumer` on every live worker; rabbitmq: start the consumers' container)."
    )


class QueueRequeueFailed(QueueStep):
    action: Literal["queue.requeue_failed"] = Field(
        description="Put failed jobs back on the queue (rq: the FailedJobRegistry; rabbitmq: the messages of its dead-letter queue, moved by a shovel)."
    )
    exception: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Only jobs whose traceback ends in this exception class (rq only).",
    )
    max_jobs: int = Field(default=1000, ge=1, le=100_000, description=MAX_JOBS)


class QueueCleanFailed(QueueStep):
    action: Literal["queue.clean_failed"] = Field(
        description="Delete failed jobs that ended longer ago than `older_than` (rq)."
    )
    older_than: Duration = Field(
        default=86400.0, description="Only failed jobs that ended longer ago than this."
    )
    max_jobs: int = Field(default=1000, ge=1, le=100_000, description=MAX_JOBS)


class QueueDrainDelayed(QueueStep):
    action: Literal["queue.drain_delayed"] = Field(
        description="Enqueue now the scheduled jobs due within `horizon` (rq)."
    )
    horizon: Duration = Field(
        default=3600.0, description="Scheduled jobs due within this time from now are enqueued."
    )
    max_jobs: int = Field(default=1000, ge=1, le=100_000, description=MAX_JOBS)


class QueuePurge(QueueStep):
    action: Literal["queue.purge"] = Field(
        description="Empty the queue: **deletes its waiting jobs**; refused unless the target sets `allow_purge: true`."
    )


class QueueRestartWorkers(QueueStep):
    action: Literal["queue.restart_workers"] = Field(
        description="Restart the workers (celery: a pool restart broadcast; rq, rabbitmq: restart the `workers_container`, or the process of `workers_process` as `process.restart` does)."
    )


def _selection(step: QueueStep) -> Selection:
    if isinstance(step, QueueRequeueFailed):
        return Selection(queue=step.queue, limit=step.max_jobs, exception=step.exception)
    if isinstance(step, QueueCleanFailed):
        return Selection(queue=step.queue, limit=step.max_jobs, older_than=step.older_than)
    if isinstance(step, QueueDrainDelayed):
        return Selection(queue=step.queue, limit=step.max_jobs, horizon=step.horizon)
    return Selection(queue=step.queue)


class _QueueAction(GuardedAction):
    target_class = QueueTargetBase
    errors = (Exception,)
    verb: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.target_types = supporting(cls.name)

    def describe(self, target: Any, step: Any) -> str:
        return f"{self.verb} on queue {step.queue!r} of {target.name} ({target.type})"

    async def perform(self, target: Any, step: Any, clients: Clients) -> Outcome:
        backend = BACKENDS.get(target.type)
        if backend is None or self.name not in backend.supports:
            return False, f"{self.name} is not supported for {target.type} targets", {}
        outcome = await backend.operate(
            self.name, target, _selection(step), clients, now=time.time()
        )
        return True, f"{outcome.detail} ({target.name})", outcome.data()

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        if isinstance(exc, Refused):
            return f"refused: {exc}"
        urls = (getattr(target, "url", None), getattr(target, "broker_url", None))
        return redis_error(exc, *urls)


class QueueResumeAction(_QueueAction):
    name = "queue.resume"
    step_type = QueueResume
    verb = "resume consumption"


class QueueRequeueFailedAction(_QueueAction):
    name = "queue.requeue_failed"
    step_type = QueueRequeueFailed
    verb = "requeue failed jobs"


class QueueCleanFailedAction(_QueueAction):
    name = "queue.clean_failed"
    step_type = QueueCleanFailed
    verb = "delete old failed jobs"


class QueueDrainDelayedAction(_QueueAction):
    name = "queue.drain_delayed"
    step_type = QueueDrainDelayed
    verb = "enqueue due scheduled jobs"


class QueuePurgeAction(_QueueAction):
    name = "queue.purge"
    step_type = QueuePurge
    verb = "purge"


class QueueRestartWorkersAction(_QueueAction):
    """Restart the workers; on a target with ``workers_process``, that registered process
    target is restarted the way ``process.restart`` does it (signal, wait for the new pid)."""

    name = "queue.restart_workers"
    step_type = QueueRestartWorkers
    verb = "restart the workers"

    async def perform(self, target: Any, step: Any, clients: Clients) -> Outcome:
        name = target.workers_process if isinstance(target, WorkersTargetBase) else None
        if not name:
            return await super().perform(target, step, clients)
        owned(target, step.queue)
        process = target.workers
        if process is None:
            raise Refused(
                f"workers_process {name!r} of {target.name} is not a registered process target"
            )
        restart = ProcessRestart(action="process.restart", timeout=step.timeout)
        ok, detail, data = await _RESTART_PROCESS.perform(process, restart, clients)
        return ok, f"{detail} ({target.name})", {"count": int(ok), "ids": [name], **data}


_RESTART_PROCESS = ProcessRestartAction()


def queue_step_problems(
    step: Any, target: Any, containers: set[str], processes: frozenset[str] = frozenset()
) -> list[str]:
    """What ``check-config`` refuses about a queue step on a registered target: a queue the
    target does not own, an operation its backend does not support, a purge without
    ``allow_purge``, an exception filter RabbitMQ cannot apply, no registered workers container
    or process. ``containers``: the container names of the registered docker_container targets;
    ``processes``: the names of the registered process targets."""
    if not isinstance(step, QueueStep) or not isinstance(target, QueueTargetBase):
        return []
    kind = str(getattr(target, "type", ""))
    found: list[str] = []
    if step.queue not in target.queues:
        found.append(f"queue {step.queue!r} is not one of {target.name}'s queues")
    if step.action == "queue.purge" and not target.allow_purge:
        found.append(f"queue.purge needs allow_purge: true on {target.name}")
    if isinstance(step, QueueRequeueFailed) and step.exception and kind != "rq":
        found.append(f"exception: {kind} failed messages carry no exception class")
    dead_letters = getattr(target, "dead_letters", {})
    if (
        step.action == "queue.requeue_failed"
        and kind == "rabbitmq"
        and step.queue not in dead_letters
    ):
        found.append(f"{target.name} names no dead-letter queue for {step.queue!r}")
    restarts = step.action == "queue.restart_workers" and kind != "celery"
    process = target.workers_process if isinstance(target, WorkersTargetBase) else None
    if restarts and process:
        if process not in processes:
            found.append(
                f"workers_process {process!r} of {target.name} is not a registered process target"
            )
        return found
    uses_container = restarts or (step.action == "queue.resume" and kind == "rabbitmq")
    if uses_container:
        container = getattr(target, "workers_container", None)
        if not container:
            needs = "workers_container or workers_process" if restarts else "workers_container"
            found.append(f"{step.action} on {target.name} needs {needs}")
        elif container not in containers:
            found.append(
                f"workers_container {container!r} of {target.name} is not a registered "
                "docker_container target"
            )
    return found


ACTIONS: tuple[BuiltinAction, ...] = (
    QueueResumeAction(),
    QueueRequeueFailedAction(),
    QueueCleanFailedAction(),
    QueueDrainDelayedAction(),
    QueuePurgeAction(),
    QueueRestartWorkersAction(),
)


def playbook_problems(
    index: int, target_name: str | None, steps: Sequence[object], targets: Sequence[Target]
) -> list[str]:
    """A queue step on a literal target: an action its backend does not support, or what
    :func:`~remediator.actions.queue.queue_step_problems` refuses."""
    from remediator.config.targets import DockerContainerTarget, ProcessTarget

    kinds = {action.name: action.target_types for action in ACTIONS}
    target = next((t for t in targets if t.name == target_name), None)
    if target is None:
        return []
    containers = {t.container_name for t in targets if isinstance(t, DockerContainerTarget)}
    processes = frozenset(t.name for t in targets if isinstance(t, ProcessTarget))
    found: list[str] = []
    for j, step in enumerate(steps):
        where = f"playbooks[{index}].steps[{j}]"
        if isinstance(step, QueueStep) and target.type not in kinds.get(step.action, ()):
            found.append(f"{where}: {step.action} is not supported for {target.type} targets")
            continue
        problems = queue_step_problems(step, target, containers, processes)
        found.extend(f"{where}: {p}" for p in problems)
    return found
