"""``geobus entities check`` and ``sync``: output, exit statuses and redaction, with fake
administration clients at geobus's seam (``geobus._cli.entities.admin_client``)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.servicebus.management import SqlRuleFilter

from core.entity_fakes import UNREACHABLE, FakeAdmin
from geobus import ConfigurationError, NamespaceConfig
from geobus._cli import entities as entities_cli
from geobus._cli import main
from geobus.local import development_key

# A local namespace's published key: the configuration's secret, which nothing may print.
KEY = development_key(7)
HOSTS = {"primary": "ns-a.servicebus.windows.net", "secondary": "ns-b.servicebus.windows.net"}
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def admins(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeAdmin]:
    """The two namespaces, as fake administration clients the command gets for its configuration."""
    fakes = {role: FakeAdmin(host) for role, host in HOSTS.items()}

    def admin_client(namespace: NamespaceConfig) -> FakeAdmin:
        assert namespace.fully_qualified_namespace == HOSTS[str(namespace.name)]
        return fakes[str(namespace.name)]

    monkeypatch.setattr(entities_cli, "admin_client", admin_client)
    return fakes


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "geobus.toml"
    path.write_text(
        "".join(
            f'[{role}]\nconnection_string = "Endpoint=sb://{host}/;SharedAccessKeyName=manage;SharedAccessKey={KEY}"\n'
            for role, host in HOSTS.items()
        )
    )
    return path


@pytest.fixture
def run(config_file: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """``geobus entities ARGS --config FILE``: (status, stdout, stderr); no key in either."""

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["entities", *args, "--config", str(config_file)])
        out, err = capsys.readouterr()
        assert KEY not in out + err
        return status, out, err

    return run


def rows(out: str) -> list[list[str]]:
    """The table's rows, split into cells, header first."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if re.search(r"\S\s{2,}\S", line)]


def populate(admin: FakeAdmin) -> None:
    """A queue, a topic with a subscription and a rule besides ``$Default``."""
    admin.add("queue", "orders", lock_duration=datetime.timedelta(seconds=30), forward_dead_lettered_messages_to="dlq")
    admin.add("queue", "dlq")
    admin.add("topic", "events")
    admin.add("subscription", "events", "audit")
    admin.add("rule", "events", "audit", "$Default")
    admin.add("subscription", "events", "eu")
    admin.add("rule", "events", "eu", "region", filter=SqlRuleFilter("region = 'eu'"))


class TestCheck:
    """``check``: 0 alike, 1 different or unreadable, 2 a bad configuration."""

    def test_alike_namespaces_exit_0(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        for admin in admins.values():
            populate(admin)
        status, out, _ = run("check")
        assert status == 0
        assert out.strip() == (
            "alike: primary (ns-a.servicebus.windows.net) and secondary (ns-b.servicebus.windows.net) define the "
            "same entities (2 queues, 1 topic, 2 subscriptions, 2 rules)"
        )
        assert all(admin.closed for admin in admins.values())

    def test_differences_are_a_table_and_exit_1(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        populate(admins["primary"])
        admins["secondary"].add("queue", "orders", max_delivery_count=3)
        admins["secondary"].add("topic", "events")
        admins["secondary"].add("subscription", "events", "eu")
        admins["secondary"].add("rule", "events", "eu", "region", filter=SqlRuleFilter("region = 'EU'"))
        status, out, _ = run("check")
        assert status == 1
        assert rows(out) == [
            ["entity", "what", "primary", "secondary"],
            ["dlq", "missing in secondary", "queue", "-"],
            ["events/Subscriptions/audit", "missing in secondary", "subscription", "-"],
            ["events/Subscriptions/eu", "rule region", "sql: region = 'eu'", "sql: region = 'EU'"],
            ["orders", "lock_duration", "PT30S", "PT1M"],
            ["orders", "max_delivery_count", "10", "3"],
            ["orders", "forward_dead_lettered_messages_to", "dlq", "-"],
        ]
        assert out.splitlines()[-1] == (
            "6 differences between primary (ns-a.servicebus.windows.net) and secondary (ns-b.servicebus.windows.net)"
        )

    def test_json(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].add("queue", "orders", default_message_time_to_live=datetime.timedelta(days=14))
        admins["secondary"].add("queue", "ORDERS")
        status, out, _ = run("check", "--json")
        assert status == 1
        assert json.loads(out) == {
            "alike": False,
            "primary": "ns-a.servicebus.windows.net",
            "secondary": "ns-b.servicebus.windows.net",
            "differences": [
                {"entity": "orders", "kind": "property", "property": "default_message_time_to_live",
                 "primary": "P14D", "secondary": "forever"},
            ],
        }  # fmt: skip

    def test_json_when_alike(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        status, out, _ = run("check", "--json")
        assert (status, json.loads(out)["alike"], json.loads(out)["differences"]) == (0, True, [])

    def test_an_unreachable_namespace_is_named_and_exits_1(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["secondary"].fail = UNREACHABLE
        status, out, err = run("check")
        assert (status, out) == (1, "")
        assert err.splitlines() == [
            "geobus entities: cannot read the entities of namespace 'secondary': ServiceRequestError: "
            "Failed to establish a new connection: [Errno 111] Connection refused",
            "geobus entities: nothing compared",
        ]

    def test_a_refused_credential_is_named_without_the_key(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].fail = ClientAuthenticationError(f"token refused for SharedAccessKey={KEY} (bad)")
        admins["secondary"].fail = ClientAuthenticationError(f"bad signature, key {KEY}")
        status, _, err = run("check")
        assert status == 1
        assert "namespace 'primary': ClientAuthenticationError: token refused for SharedAccessKey=*** (bad)" in err
        assert "namespace 'secondary': ClientAuthenticationError: bad signature, key ***" in err

    def test_a_key_in_a_value_is_masked(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].add("queue", "orders", user_metadata=KEY)
        admins["secondary"].add("queue", "orders")
        status, out, _ = run("check")
        assert status == 1 and rows(out)[1] == ["orders", "user_metadata", "***", "-"]

    def test_a_bad_configuration_exits_2(self, admins: dict[str, FakeAdmin], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        broken = tmp_path / "broken.toml"
        broken.write_text(f'[primary]\nconnection_string = "Endpoint=sb://ns-a/;SharedAccessKey={KEY}"\n')
        assert main(["entities", "check", "--config", str(broken)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("geobus entities: configuration (") and KEY not in err

    def test_a_credential_the_admin_client_cannot_use_exits_2(self, monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
        primary = FakeAdmin(HOSTS["primary"])

        def build(namespace: NamespaceConfig) -> FakeAdmin:
            if namespace.name == "primary":
                return primary
            raise ConfigurationError("secondary.credential", "the administration client is sync")

        monkeypatch.setattr(entities_cli, "admin_client", build)
        status, _, err = run("check")
        assert status == 2
        assert err.strip() == "geobus entities: configuration: secondary.credential: the administration client is sync"
        assert primary.closed

    def test_a_subcommand_is_required(self, run: Run) -> None:
        with pytest.raises(SystemExit) as exited:
            run()
        assert exited.value.code == 2


class TestSync:
    """``sync --from``: the plan, then the changes; deletions only with ``--delete``."""

    def test_dry_run_prints_the_plan_applies_nothing_and_exits_1(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        populate(admins["primary"])
        status, out, _ = run("sync", "--from", "primary", "--dry-run")
        assert status == 1
        assert admins["secondary"].calls == [] and admins["secondary"].entities == {}
        assert out.splitlines()[0] == (
            "plan: primary (ns-a.servicebus.windows.net) -> secondary (ns-b.servicebus.windows.net), 7 steps:"
        )
        assert rows(out)[:8] == [
            ["action", "kind", "entity", "properties"],
            ["create", "topic", "events"],
            ["create", "queue", "dlq"],
            ["create", "queue", "orders"],
            ["create", "subscription", "events/Subscriptions/audit"],
            ["create", "subscription", "events/Subscriptions/eu"],
            ["create", "rule", "events/Subscriptions/eu/Rules/region"],
            ["delete", "rule", "events/Subscriptions/eu/Rules/$Default"],
        ]
        assert "dry run: nothing changed" in out

    def test_dry_run_of_alike_namespaces_exits_0(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        for admin in admins.values():
            populate(admin)
        status, out, _ = run("sync", "--from", "secondary", "--dry-run")
        assert status == 0
        assert out.splitlines()[0].endswith("-> primary (ns-a.servicebus.windows.net): nothing to do")

    def test_sync_then_check_is_alike(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        populate(admins["primary"])
        admins["secondary"].add("queue", "orders", max_delivery_count=3)
        status, out, _ = run("sync", "--from", "primary")
        assert status == 0
        assert "applied 7 of 7 step(s); now:" in out
        assert out.splitlines()[-1].startswith("alike: primary (ns-a.servicebus.windows.net) and secondary")
        assert admins["secondary"].calls == [
            ("create_topic", "events"),
            ("create_queue", "dlq"),
            ("update_queue", "orders"),
            ("create_subscription", "events/audit"),
            ("create_subscription", "events/eu"),
            ("create_rule", "events/eu/region"),
            ("delete_rule", "events/eu/$Default"),
        ]
        assert run("check")[0] == 0
        orders = admins["secondary"].get_queue("orders")
        assert (orders.max_delivery_count, orders.lock_duration) == (10, datetime.timedelta(seconds=30))
        assert orders.forward_dead_lettered_messages_to == "sb://ns-b.servicebus.windows.net/dlq"

    def test_nothing_is_deleted_without_delete(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].add("queue", "new")
        admins["secondary"].add("queue", "old")
        status, out, _ = run("sync", "--from", "primary")
        assert status == 1
        assert admins["secondary"].calls == [("create_queue", "new")]
        assert ["old", "missing in primary", "-", "queue"] in rows(out)

    def test_delete_deletes_what_the_source_lacks(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["secondary"].add("queue", "old")
        admins["secondary"].add("topic", "gone")
        admins["secondary"].add("subscription", "gone", "s")
        status, _, _ = run("sync", "--from", "primary", "--delete")
        assert status == 0
        assert admins["secondary"].calls == [("delete_queue", "old"), ("delete_topic", "gone")]

    def test_an_immutable_difference_is_left_to_a_person_and_exits_1(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].add("queue", "orders", requires_session=True, max_delivery_count=3)
        admins["primary"].add("queue", "other")
        admins["secondary"].add("queue", "orders")
        status, out, err = run("sync", "--from", "primary")
        assert status == 1
        assert ["recreate by hand", "queue", "orders", "requires_session"] in rows(out)
        assert admins["secondary"].calls == [("update_queue", "orders"), ("create_queue", "other")]
        assert admins["secondary"].get_queue("orders").requires_session is False
        assert err.strip() == (
            "geobus entities: queue orders in secondary (ns-b.servicebus.windows.net) must be recreated by hand: "
            "requires_session cannot change once it exists (sync deletes nothing to recreate it)"
        )
        assert ["orders", "requires_session", "true", "false"] in rows(out)

    def test_a_failing_step_stops_the_sync_and_exits_1(self, admins: dict[str, FakeAdmin], run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        admins["primary"].add("queue", "a")
        admins["primary"].add("queue", "b")

        def refuse(name: str, **properties: object) -> None:
            raise HttpResponseError(f"Forbidden: SharedAccessKey={KEY} may not manage")

        monkeypatch.setattr(admins["secondary"], "create_queue", refuse)
        status, out, err = run("sync", "--from", "primary")
        assert status == 1
        assert "geobus entities: secondary (ns-b.servicebus.windows.net): create queue a: HttpResponseError: " in err
        assert "applied 0 of 2 step(s); now:" in out

    def test_json(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["secondary"].add("queue", "orders", lock_duration=datetime.timedelta(seconds=45))
        admins["primary"].add("queue", "orders")
        status, out, _ = run("sync", "--from", "secondary", "--json")
        assert status == 0
        assert json.loads(out) == {
            "from": "secondary",
            "to": "primary",
            "dry_run": False,
            "delete": False,
            "plan": [{"action": "update", "kind": "queue", "entity": "orders", "properties": ["lock_duration"]}],
            "applied": 1,
            "failed": None,
            "recreate_by_hand": [],
            "alike": True,
            "primary": "ns-a.servicebus.windows.net",
            "secondary": "ns-b.servicebus.windows.net",
            "differences": [],
        }

    def test_a_new_subscription_keeps_a_changed_default_rule(self, admins: dict[str, FakeAdmin], run: Run) -> None:
        admins["primary"].add("topic", "events")
        admins["primary"].add("subscription", "events", "eu")
        admins["primary"].add("rule", "events", "eu", "$Default", filter=SqlRuleFilter("region = 'eu'"))
        assert run("sync", "--from", "primary")[0] == 0
        assert admins["secondary"].calls[-1] == ("update_rule", "events/eu/$Default")
        assert admins["secondary"].get_rule("events", "eu", "$default").filter.sql_expression == "region = 'eu'"  # type: ignore[union-attr]

    def test_from_is_required(self, run: Run) -> None:
        with pytest.raises(SystemExit) as exited:
            run("sync")
        assert exited.value.code == 2

    def test_the_command_is_listed_with_its_exit_statuses(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["entities", "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "Exit 0 alike (after a sync); 1 they differ" in help_text and "2 a bad configuration" in help_text
