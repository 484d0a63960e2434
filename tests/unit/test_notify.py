"""``python -m steps.notify send`` against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import json

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from steps.notify import parse_failures
from tests.harness import free_port, run_step

FAILURES = json.dumps(
    [
        {
            "displayName": "postgres",
            "message": "Error (exit code 3): run 2026 has no complete postgres backup",
            "templateName": "backup",
            "phase": "Failed",
            "podName": "atlas-backup-all-x-backup-1",
            "finishedAt": "2026-11-21T03:10:00Z",
        }
    ]
)
SECRET_PATH = "/hooks/T000/B000/s3cr3t-t0ken"


def args(*extra: str) -> list[str]:
    return [
        "send",
        "--tenant", "atlas",
        "--workflow", "atlas-backup-all-x7k2p",
        "--workflow-template", "atlas-backup-all",
        "--namespace", "argo",
        "--status", "Failed",
        "--duration", "725.4",
        "--failures", FAILURES,
        "--ui-url", "https://argo.example.com/",
        "--attempts", "2",
        "--timeout", "2",
        *extra,
    ]  # fmt: skip


def test_slack_message_names_workflow_status_failures_and_link(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SECRET_PATH, method="POST").respond_with_data("ok")
    run = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": httpserver.url_for(SECRET_PATH)})
    assert run.code == 0, run.stderr
    assert run.result["delivered"] is True
    ((request, _),) = httpserver.log
    text = request.get_json()["text"]
    assert "*atlas-backup-all-x7k2p* Failed" in text
    assert "tenant atlas" in text and "12m 5s" in text
    assert "• postgres (Failed): Error (exit code 3): run 2026 has no complete postgres backup" in text
    assert "<https://argo.example.com/workflows/argo/atlas-backup-all-x7k2p|Open in Argo>" in text


def test_json_format(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SECRET_PATH, method="POST").respond_with_data("ok")
    run = run_step(
        "notify",
        args("--format", "json", "--status", "Succeeded", "--failures", "null"),
        env={"NOTIFY_WEBHOOK_URL": httpserver.url_for(SECRET_PATH)},
    )
    assert run.code == 0, run.stderr
    ((request, _),) = httpserver.log
    body = request.get_json()
    assert body["status"] == "Succeeded"
    assert body["failures"] == []
    assert body["workflow_template"] == "atlas-backup-all"
    assert body["url"] == "https://argo.example.com/workflows/argo/atlas-backup-all-x7k2p"
    assert body["duration_s"] == 725.4


def test_webhook_down_is_logged_and_exits_0_and_strict_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    run = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": url})
    assert run.code == 0
    assert run.result["delivered"] is False
    assert any(line.get("msg") == "notification not delivered" for line in run.logs)
    strict = run_step("notify", args("--strict"), env={"NOTIFY_WEBHOOK_URL": url})
    assert strict.code == 1
    assert "notification not delivered" in strict.error


def test_server_errors_are_retried_client_errors_are_not(httpserver: HTTPServer) -> None:
    calls: list[int] = []

    def flaky(request: Request) -> Response:
        calls.append(1)
        return Response("busy", status=503 if len(calls) == 1 else 200)

    httpserver.expect_request(SECRET_PATH, method="POST").respond_with_handler(flaky)
    run = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": httpserver.url_for(SECRET_PATH)})
    assert run.code == 0 and run.result["delivered"] is True
    assert len(calls) == 2

    httpserver.clear()
    httpserver.expect_request("/gone", method="POST").respond_with_data("no", status=404)
    run = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": httpserver.url_for("/gone")})
    assert run.result["delivered"] is False
    assert "HTTP 404" in run.result["error"]
    assert len(httpserver.log) == 1


def test_webhook_url_never_printed(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SECRET_PATH, method="POST").respond_with_data("no", status=500)
    run = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": httpserver.url_for(SECRET_PATH)})
    assert "s3cr3t-t0ken" not in run.stdout + run.stderr


def test_missing_or_bad_webhook_is_a_usage_error() -> None:
    missing = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": ""})
    assert missing.code == 2
    assert "notify webhook URL is not set" in missing.error
    bad = run_step("notify", args(), env={"NOTIFY_WEBHOOK_URL": "file:///etc/passwd"})
    assert bad.code == 2
    assert "not an http(s) URL" in bad.error


def test_parse_failures_accepts_what_argo_hands_over() -> None:
    assert parse_failures("null") == []
    assert parse_failures("") == []
    assert parse_failures("{{workflow.failures}}") == []
    quoted = json.dumps(FAILURES)  # Argo may pass the array as a quoted JSON string
    assert parse_failures(quoted)[0]["step"] == "postgres"
    assert parse_failures("not json at all")[0]["message"] == "not json at all"
