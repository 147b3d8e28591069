"""Every field of the webhook payload, hostile, against a real served process: no 5xx.

A data-driven corpus: extreme dates in ``startsAt`` and ``endsAt`` (year 9999 with a negative
offset, year 0001 with a positive one, before 1970, huge and negative epoch numbers, NaN-like
strings), Alertmanager's zero ``endsAt`` (``0001-01-01T00:00:00Z``, which must keep working), a
10 MB label (over ``server.max_body_bytes``), 100 000 labels, JSON nested 100 000 deep, invalid
UTF-8, duplicate keys, a wrong type in every field, an empty alerts list, a missing version.

Expected: each answer is 200 (accepted) or a 4xx with the JSON error format; never a 5xx
(Alertmanager retries a 5xx for ever). Afterwards the worker has decided every stored alert,
``/health`` answers 200, a normal alert is accepted and decided, and the log holds no traceback.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import httpx2 as httpx

from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, HEALTH, alert, payload
from tests.waiting import wait_for

DATES: list[Any] = [
    "9999-12-31T23:59:59-01:00",  # past year 9999 in UTC: OverflowError before the fix
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "0001-01-01T00:59:59-01:00",
    "0001-01-02T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00-00:01",
    "1900-02-28T12:00:00.999999999+05:30",
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00",  # no offset
    "2026-01-01",
    "+10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "-0",
    "0",
    "",
    " ",
    "\u0000",
    "null",
    0,
    -1,
    -62135596800,  # 0001-01-01
    -62135596801,
    253402300799,  # 9999-12-31T23:59:59
    253402300800,
    10**20,
    -(10**20),
    1e308,
    -0.0,
    1.5,
    True,
    None,
    [],
    {},
]

WRONG: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**30,
    "",
    "x",
    "NaN",
    [],
    [1],
    {},
    {"a": 1},
    {"a": None},
]
TOP_FIELDS = [
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
]
ALERT_FIELDS = [
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
]

# Answers some cases must get exactly: Alertmanager's zero endsAt keeps working, an instant
# outside years 1-9999 in UTC is named in a 422, the body limit holds.
EXPECTED = {
    "endsAt='0001-01-01T00:00:00Z'": 200,
    "resolved endsAt='0001-01-01T00:00:00Z'": 200,
    "endsAt='0001-01-01T00:00:00+01:00'": 200,
    "startsAt='1969-12-31T23:59:59Z'": 200,
    "startsAt=-1": 200,
    "startsAt='9999-12-31T23:59:59-01:00'": 422,
    "endsAt='9999-12-31T23:59:59-01:00'": 422,
    "startsAt='0001-01-01T00:00:00+01:00'": 422,
    "startsAt='NaN'": 422,
    "startsAt=100000000000000000000": 422,
    "no version": 422,
    "an empty alerts list": 200,
    "10 MB single label": 413,
    "100k nested arrays": 400,
    "invalid UTF-8 bytes": 400,
}

_seq = iter(range(10**9))


def fp() -> str:
    return f"d{next(_seq):015x}"


def body(**changes: Any) -> dict[str, Any]:
    """A normal one-alert notification, with top-level fields (or, under ``alert=``, the
    alert's fields) replaced; a value of ``...`` removes the field."""
    one = alert(fp(), "HostilePayload", labels={"target": "nope"})
    whole = payload([one])
    for key, value in changes.pop("alert", {}).items():
        if value is ...:
            one.pop(key)
        else:
            one[key] = value
    for key, value in changes.items():
        if value is ...:
            whole.pop(key)
        else:
            whole[key] = value
    return whole


def cases() -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []

    def add(name: str, data: dict[str, Any] | bytes) -> None:
        found.append((name, data if isinstance(data, bytes) else json.dumps(data).encode()))

    for date in DATES:
        add(f"startsAt={date!r}", body(alert={"startsAt": date}))
        add(f"endsAt={date!r}", body(alert={"endsAt": date}))
        add(
            f"resolved endsAt={date!r}",
            body(status="resolved", alert={"status": "resolved", "endsAt": date}),
        )
    for field in TOP_FIELDS:
        add(f"no {field}", body(**{field: ...}))
        for value in WRONG:
            add(f"{field}={value!r}", body(**{field: value}))
    for field in ALERT_FIELDS:
        add(f"alert without {field}", body(alert={field: ...}))
        for value in WRONG:
            add(f"alert {field}={value!r}", body(alert={field: value}))
    add("a label value of the wrong type", body(alert={"labels": {"alertname": "X", "n": 1}}))
    add("an alert that is not an object", body(alerts=["x", 1, None]))
    add("an empty alerts list", body(alerts=[]))
    add("an empty object", {})
    add("10 MB single label", body(alert={"labels": {"alertname": "Big", "big": "x" * 10**7}}))
    many = {f"l{i}": "v" for i in range(100_000)}
    add("100k labels", body(alert={"labels": {"alertname": "ManyLabels", **many}}))
    add("100k annotations", body(alert={"annotations": many}))
    add("100k nested arrays", b"[" * 100_000)
    add("nested object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    add("nested in labels", json.dumps(body()).replace('"labels": {', '"labels": {"n": ' + "[" * 50_000 + "]" * 50_000 + ", ", 1).encode())  # fmt: skip
    normal = json.dumps(body())
    add("invalid UTF-8 in a label", normal.replace("HostilePayload", "Hostile\xffPayload").encode("latin-1"))  # fmt: skip
    add("invalid UTF-8 bytes", b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc")
    add("a lone surrogate escape", normal.replace("HostilePayload", "Hostile\\ud800Payload").encode())  # fmt: skip
    add("an escaped NUL", normal.replace("HostilePayload", "Hostile\\u0000Payload").encode())
    add("duplicate keys", normal.replace('"version": "4"', '"version": "3", "version": "4"').encode())  # fmt: skip
    add("duplicate alert keys", normal.replace('"status": "firing", "labels"', '"status": "x", "status": "firing", "labels"', 1).encode())  # fmt: skip
    add("a NaN literal", normal.replace('"truncatedAlerts": 0', '"truncatedAlerts": NaN').encode())
    add("an Infinity literal", normal.replace('"truncatedAlerts": 0', '"truncatedAlerts": -Infinity').encode())  # fmt: skip
    add("a huge exponent", normal.replace('"truncatedAlerts": 0', '"truncatedAlerts": 1e999999').encode())  # fmt: skip
    add("a huge integer", normal.replace('"truncatedAlerts": 0', '"truncatedAlerts": ' + "9" * 5000).encode())  # fmt: skip
    add("a trailing comma", normal[:-1].encode() + b",}")
    add("two documents", normal.encode() * 2)
    return found


def test_no_payload_field_makes_the_webhook_answer_5xx(serve: Serve, figures: Figures) -> None:
    served = serve(
        {
            "health": {"enabled": False},
            "worker": {"poll_interval": "100ms"},
            "playbooks": [
                {
                    "name": "noop",
                    "match": ['alertname="Normal"'],
                    "target": "{{ labels.target }}",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                }
            ],
        }
    )
    auth = {**served.headers("alertmanager"), "Content-Type": "application/json"}
    answers: Counter[int] = Counter()
    by_name: dict[str, int] = {}
    failures: list[str] = []
    slowest = 0.0
    all_cases = cases()
    with httpx.Client(timeout=60) as client:
        for name, data in all_cases:
            began = time.perf_counter()
            answer = client.post(served.url + ALERTS, content=data, headers=auth)
            slowest = max(slowest, time.perf_counter() - began)
            answers[answer.status_code] += 1
            by_name[name] = answer.status_code
            if answer.status_code >= 500 or answer.status_code not in (200, 400, 413, 422):
                failures.append(f"{name[:80]}: {answer.status_code} {answer.text[:200]}")
            elif answer.status_code != 200:
                error = answer.json()["error"]
                assert error["code"] and error["message"], name
        assert not failures, "\n".join(failures)
        assert {name: by_name[name] for name in EXPECTED} == EXPECTED
        assert (
            "outside years 1 to 9999"
            in client.post(
                served.url + ALERTS,
                json=body(alert={"startsAt": "9999-12-31T23:59:59-01:00"}),
                headers=auth,
            ).json()["error"]["message"]
        )

        # Every stored alert is decided; the server still serves and a normal alert works.
        wait_for(
            lambda: served.metric("remediator_inbox_pending") == 0,
            timeout=60,
            what="an empty inbox",
        )
        assert client.get(served.url + HEALTH).status_code == 200
        normal = fp()
        status = client.post(
            served.url + ALERTS,
            json=payload([alert(normal, "Normal", labels={"target": "unregistered"})]),
            headers=auth,
        ).status_code
        assert status == 200
        wait_for(
            lambda: any(e["fingerprint"] == normal for e in served.events("recovery:skipped")),
            timeout=30,
            what="the normal alert's decision",
        )
    log = served.log_path.read_text(errors="replace")
    assert "Traceback" not in log and '"level": "error"' not in log, served.log()
    figures(
        payloads_tried=len(all_cases),
        answers=dict(sorted(answers.items())),
        slowest_answer_seconds=round(slowest, 3),
    )
