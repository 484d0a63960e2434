"""``python -m steps.notify send``: post a workflow's result to a Slack-compatible or generic JSON webhook.

The webhook URL is a secret: it comes only from ``NOTIFY_WEBHOOK_URL`` (a ``secretKeyRef``) or
``--webhook-file``. Delivery is retried a few times; when the webhook stays down the step logs a warning
and exits 0 (a notification outage must not turn a good backup into a failed workflow; the Prometheus
metrics and the freshness monitor still alert). ``--strict`` makes a failed delivery exit 1 instead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from steps.runtime import TransientError, UsageError, action, component, get_logger, read_secret, tenant_option

cli = component("notify", "Post a workflow's result to a Slack-compatible or generic JSON webhook.")

STATUS_ICON = {"Succeeded": ":white_check_mark:", "Failed": ":x:", "Error": ":boom:"}
MAX_FAILURES_SHOWN = 10


class _Retryable(Exception):
    """A delivery failure worth retrying (network error, 429, 5xx)."""


def parse_failures(text: str) -> list[dict[str, str]]:
    """Argo's ``{{workflow.failures}}`` JSON (possibly quoted, ``null`` or unresolved) -> failed nodes."""
    value: Any = (text or "").strip()
    for _ in range(2):  # Argo may hand over the JSON array as a quoted JSON string
        if not isinstance(value, str) or not value or value.startswith("{{"):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [{"step": "?", "message": " ".join(value.split())[:300]}]
    if not isinstance(value, list):
        return []
    out = []
    for node in value:
        if isinstance(node, dict):
            out.append(
                {
                    "step": str(node.get("displayName") or node.get("templateName") or "?"),
                    "template": str(node.get("templateName") or ""),
                    "phase": str(node.get("phase") or ""),
                    "message": " ".join(str(node.get("message") or "").split())[:300],
                }
            )
    return out


def _duration(text: str) -> str:
    try:
        seconds = int(float(text))
    except ValueError:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def build_payload(
    fmt: str,
    *,
    tenant: str,
    workflow: str,
    template: str,
    namespace: str,
    status: str,
    duration: str,
    failures: list[dict[str, str]],
    link: str,
) -> dict[str, Any]:
    """The webhook body: Slack ``{"text": ...}`` (mrkdwn) or a flat JSON document."""
    if fmt == "json":
        return {
            "tenant": tenant,
            "workflow": workflow,
            "workflow_template": template,
            "namespace": namespace,
            "status": status,
            "duration_s": float(duration) if _duration(duration) else None,
            "failures": failures,
            "url": link,
        }
    took = _duration(duration)
    head = f"{STATUS_ICON.get(status, ':grey_question:')} *{workflow}* {status}"
    facts = ", ".join(x for x in (f"tenant {tenant}", template and f"template {template}", took) if x)
    lines = [f"{head} ({facts})"]
    if failures:
        lines.append("Failed steps:")
        lines += [f"• {f['step']} ({f['phase']}): {f['message']}" for f in failures[:MAX_FAILURES_SHOWN]]
        if len(failures) > MAX_FAILURES_SHOWN:
            lines.append(f"… and {len(failures) - MAX_FAILURES_SHOWN} more")
    if link:
        lines.append(f"<{link}|Open in Argo>")
    return {"text": "\n".join(lines)}


def _post(url: str, payload: dict[str, Any], timeout: float, attempts: int) -> None:
    body = json.dumps(payload).encode()

    @retry(
        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=1, min=1, max=10),
        reraise=True,
    )
    def once() -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) in send()
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "tenant-dr"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator-set URL
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"webhook answered HTTP {exc.code}") from exc
            raise TransientError(f"webhook rejected the message: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"webhook unreachable: {reason}") from exc

    once()


@action(cli)
@tenant_option
@click.option("--workflow", required=True, help="Workflow name ({{workflow.name}}).")
@click.option("--status", required=True, help="Final phase ({{workflow.status}}): Succeeded, Failed, Error.")
@click.option("--workflow-template", "template", default="", help="The WorkflowTemplate the run came from.")
@click.option("--namespace", default="", help="Workflow namespace (for the link).")
@click.option("--duration", default="", help="Seconds ({{workflow.duration}}).")
@click.option("--failures", default="", help="Argo's {{workflow.failures}} JSON.")
@click.option("--format", "fmt", type=click.Choice(["slack", "json"]), default="slack", show_default=True)
@click.option("--ui-url", default="", help="Argo UI base URL; the message links to the workflow there.")
@click.option("--webhook-file", default=None, help="File holding the webhook URL (else env NOTIFY_WEBHOOK_URL).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per delivery attempt.")
@click.option("--attempts", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when delivery fails (default: warn and exit 0).")
def send(
    tenant: str,
    workflow: str,
    status: str,
    template: str,
    namespace: str,
    duration: str,
    failures: str,
    fmt: str,
    ui_url: str,
    webhook_file: str | None,
    timeout: float,
    attempts: int,
    strict: bool,
) -> dict[str, Any]:
    """Post the result of a workflow run (name, status, failed steps, link) to the webhook."""
    url = read_secret(what="notify webhook URL", env="NOTIFY_WEBHOOK_URL", file=webhook_file)
    assert url is not None
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UsageError("notify webhook URL is not an http(s) URL", hint="check the webhook Secret's value")
    failed = parse_failures(failures)
    link = f"{ui_url.rstrip('/')}/workflows/{namespace}/{workflow}" if ui_url and namespace else ui_url
    payload = build_payload(
        fmt,
        tenant=tenant,
        workflow=workflow,
        template=template,
        namespace=namespace,
        status=status,
        duration=duration,
        failures=failed,
        link=link,
    )
    result: dict[str, Any] = {"tenant": tenant, "workflow": workflow, "status": status, "failed_steps": len(failed)}
    try:
        _post(url, payload, timeout, attempts)
    except (_Retryable, TransientError) as exc:
        if strict:
            raise TransientError(f"notification not delivered: {exc}", hint="check the webhook URL Secret") from exc
        get_logger().warning("notification not delivered", error=str(exc))
        return {**result, "delivered": False, "error": str(exc)}
    return {**result, "delivered": True}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
