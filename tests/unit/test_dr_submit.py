"""``tenant-dr submit`` against a local HTTP stand-in for the Argo Server (the exact request is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from tests.harness import REPO

CLI = "import sys; from workflows.cli import main; sys.argv[0] = 'tenant-dr'; main()"
TOKEN = "v2:argo-Token-9d1e77"  # a test token


def submit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "submit", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_submit_posts_the_template_and_parameters_with_the_bearer_token(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        body = {"metadata": {"name": "tenant-recreate-x7k2p", "namespace": "dr"}}
        return Response(json.dumps(body), status=200, content_type="application/json")

    httpserver.expect_request("/api/v1/workflows/dr/submit", method="POST").respond_with_handler(handler)
    proc = submit(
        "tenant-recreate",
        "-p", "run-id=latest",
        "-p", "drill=true",
        "-n", "dr",
        "--ui-url", "https://argo.example.com/",
        env={"ARGO_SERVER": httpserver.url_for("/"), "ARGO_TOKEN": TOKEN},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "submitted tenant-recreate-x7k2p in dr",
        "https://argo.example.com/workflows/dr/tenant-recreate-x7k2p",
    ]
    assert len(seen) == 1
    request = seen[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {
        "namespace": "dr",
        "resourceKind": "WorkflowTemplate",
        "resourceName": "tenant-recreate",
        "submitOptions": {"parameters": ["run-id=latest", "drill=true"]},
    }
    assert TOKEN not in proc.stdout + proc.stderr


def test_token_file_with_bearer_prefix_and_default_link(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(
        "/api/v1/workflows/argo/submit", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    ).respond_with_json({"metadata": {"name": "wf-1"}})
    token_file = tmp_path / "token"
    token_file.write_text(f"Bearer {TOKEN}\n")
    proc = submit("tenant-recreate", "--server", httpserver.url_for("/"), "--token-file", str(token_file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == httpserver.url_for("/workflows/argo/wf-1")


def test_refusals_and_unreachable_servers_are_one_line_errors(httpserver: HTTPServer) -> None:
    env = {"ARGO_SERVER": httpserver.url_for("/"), "ARGO_TOKEN": TOKEN}
    httpserver.expect_request("/api/v1/workflows/argo/submit").respond_with_json(
        {"code": 7, "message": "workflowtemplates.argoproj.io is forbidden"}, status=403
    )
    denied = submit("tenant-recreate", env=env)
    assert denied.returncode == 2
    assert "refused the token (403: workflowtemplates.argoproj.io is forbidden)" in denied.stderr
    assert TOKEN not in denied.stderr
    httpserver.clear_all_handlers()
    httpserver.expect_request("/api/v1/workflows/argo/submit").respond_with_json({"message": "not found"}, status=404)
    missing = submit("nope", env=env)
    assert missing.returncode == 2 and "WorkflowTemplate argo/nope not found" in missing.stderr
    assert submit("tenant-recreate", env={"ARGO_TOKEN": TOKEN}).returncode == 2  # no server
    assert submit("tenant-recreate", env={"ARGO_SERVER": httpserver.url_for("/")}).returncode == 2  # no token
    gone = submit("tenant-recreate", env={"ARGO_SERVER": "http://127.0.0.1:9", "ARGO_TOKEN": TOKEN})
    assert gone.returncode == 1 and "cannot reach the Argo Server" in gone.stderr
    assert submit("tenant-recreate", "-p", "novalue", env=env).returncode == 2
