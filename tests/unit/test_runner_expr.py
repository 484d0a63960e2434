"""The runner's expression evaluator: govaluate ``when``, expr retry expressions, ``depends``."""

from __future__ import annotations

import pytest

from workflows.runner_expr import ExprError, depends_tasks, evaluate, evaluate_bool, evaluate_depends


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'true' == 'true'", True),
        ("'false' == 'true'", False),
        ("'true' != 'true'", False),
        ("Succeeded == Succeeded", True),  # bare words are strings, as Argo does for govaluate variables
        ("Failed != Succeeded", True),
        ("1 < 2 && 'a' == 'a'", True),
        ("(1 > 2) || !('x' == 'y')", True),
        ("2 == 2.0", True),
        ("'2' == 2", False),
        ("'abc' =~ '^a.c$'", True),
        ("'b' in ('a', 'b')", True),
    ],
)
def test_when_govaluate(text: str, expected: bool) -> None:
    assert evaluate_bool(text, mode="govaluate") is expected


RETRY = "lastRetry.exitCode not in ['2', '3']"


@pytest.mark.parametrize(("code", "expected"), [("1", True), ("2", False), ("3", False), ("-1", True), ("137", True)])
def test_retry_expression_of_the_packages(code: str, expected: bool) -> None:
    env = {"lastRetry": {"exitCode": code, "status": "Failed", "message": "", "duration": "1"}}
    assert evaluate_bool(RETRY, mode="expr", env=env) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("asInt(lastRetry.exitCode) == 1", True),
        ("asInt(lastRetry.exitCode) > 1 or lastRetry.status == 'Error'", False),
        ("lastRetry.status == 'Failed' and lastRetry.exitCode != '0'", True),
        ("lastRetry.exitCode in ['1'] && !(lastRetry.message contains 'fatal')", True),
        ("not (lastRetry.exitCode == '1')", False),
        ("lastRetry.message matches 'conn.*refused'", False),
    ],
)
def test_retry_expr_operators(text: str, expected: bool) -> None:
    env = {"lastRetry": {"exitCode": "1", "status": "Failed", "message": "timeout", "duration": "2.5"}}
    assert evaluate_bool(text, mode="expr", env=env) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lastRetry.nope == '1'", "unknown variable lastRetry.nope"),
        ("exit(1)", "unknown function exit()"),
        ("__import__('os')", "unknown function"),
        ("'a' < 1", "different types"),
        ("1 +", "unexpected"),
        ("'unterminated", "unexpected character"),
    ],
)
def test_errors_are_clear(text: str, fragment: str) -> None:
    env = {"lastRetry": {"exitCode": "1"}}
    with pytest.raises(ExprError, match="cannot evaluate") as info:
        evaluate(text, mode="expr", env=env)
    assert fragment in str(info.value)


def test_non_boolean_result_is_refused() -> None:
    with pytest.raises(ExprError, match="not a boolean"):
        evaluate_bool("1 + 2", mode="govaluate")


def test_depends() -> None:
    phases = {"a": "Succeeded", "b": "Failed", "new-run-id": "Succeeded", "c": "Skipped"}

    def result(task: str, res: str | None) -> bool:
        phase = phases[task]
        return phase in ("Succeeded", "Skipped") if res is None else phase == res

    assert evaluate_depends("a && new-run-id", result)
    assert not evaluate_depends("a && b", result)
    assert evaluate_depends("a && (b.Failed || b.Errored)", result)
    assert evaluate_depends("!b.Succeeded && c", result)
    names = depends_tasks("elasticsearch && cassandra.Succeeded || (x-y.Failed)")
    assert names == ["elasticsearch", "cassandra", "x-y"]
    with pytest.raises(ExprError, match="unknown task result"):
        depends_tasks("a.Finished")
