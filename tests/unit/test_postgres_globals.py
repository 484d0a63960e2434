# ruff: noqa: E501  (pg_dumpall writes each role on one long line; the fixture keeps them as they are)
"""``plan_globals``: how ``pg_dumpall --globals-only`` output is split for a target that has some of it."""

from __future__ import annotations

from steps.postgres import plan_globals

GLOBALS = '''--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

--
-- Roles
--

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy';
CREATE ROLE "odd ""name""";
ALTER ROLE "odd ""name""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'md5-odd-hash';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:cG9zdA==$b3Jn:b3Jn';
CREATE ROLE readers;
ALTER ROLE readers WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
GRANT readers TO app_owner GRANTED BY postgres;

--
-- Tablespaces
--

CREATE TABLESPACE tdr_small OWNER postgres LOCATION '/mnt/small';
CREATE TABLESPACE "new space" OWNER postgres LOCATION '/srv/new space';
'''


def test_existing_roles_and_tablespaces_are_not_created_and_their_passwords_wait_for_the_commit() -> None:
    plan = plan_globals(
        GLOBALS,
        existing={"app_owner", "postgres", "readers"},
        keep={"postgres"},
        tablespaces={"pg_default", "tdr_small"},
    )
    lines = plan.script.splitlines()
    assert "CREATE ROLE app_owner;" not in lines and "CREATE ROLE readers;" not in lines
    assert 'CREATE ROLE "odd ""name""";' in lines  # new: created, with its password at once
    assert any(line.startswith('ALTER ROLE "odd ""name""" WITH') and "md5-odd-hash" in line for line in lines)
    assert (
        "ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;"
        in lines
    )
    assert "GRANT readers TO app_owner GRANTED BY postgres;" in lines  # memberships still apply
    assert "PASSWORD" not in "\n".join(line for line in lines if "odd" not in line)
    assert not any(line.startswith("CREATE TABLESPACE tdr_small ") for line in lines)
    assert "CREATE TABLESPACE \"new space\" OWNER postgres LOCATION '/srv/new space';" in lines
    # the existing role's backed-up password is set only later, in a transaction of its own; the
    # connecting role's (postgres) never
    assert plan.passwords == "ALTER ROLE app_owner WITH PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy';\n"
    assert plan.roles == {
        "create": ['odd "name"'],
        "update": ["app_owner", "postgres", "readers"],
        "password_kept": ["postgres"],
        "password_from_backup": ["app_owner"],
    }
    assert plan.tablespaces == {"create": ["new space"], "exist": ["tdr_small"]}


def test_an_empty_target_gets_everything_at_once() -> None:
    plan = plan_globals(GLOBALS, existing=set(), keep=set(), tablespaces={"pg_default"})
    assert plan.passwords == ""
    assert plan.script.count("CREATE ROLE ") == 4 and plan.script.count("PASSWORD '") == 3
    assert plan.tablespaces == {"create": ["tdr_small", "new space"], "exist": []}
