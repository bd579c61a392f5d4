"""docker-compose.yml, checked against the code it deploys.

No Docker engine runs on the development machines or in CI, so the compose file is never
started here and nothing would notice it drifting from the code: a renamed environment
variable, a changed default port, a topic added to `contracts.topics`, a Kafka listener
that host clients cannot reach. These checks read the file with yaml.safe_load and compare
it with the settings classes, the topic list, devstack's secrets and database names.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from contracts.topics import ALL_TOPICS, COMPACTED_TOPICS, MIN_PARTITIONS
from devstack import postgres as devstack_postgres
from devstack.services import _GENERATED_SECRETS as SECRETS
from servicekit.settings import DEFAULT_SERVER_URL, ServiceSettings, env_name
from services.audit.settings import AuditSettings
from services.keys.settings import KeysSettings
from services.usage.settings import UsageSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SETTINGS: dict[str, type[ServiceSettings]] = {
    cls.service_name: cls for cls in (KeysSettings, AuditSettings, UsageSettings)
}
APPS = sorted(SETTINGS)
SERVICE_VARIABLE_FIELDS = ("http_port", "service_database_url")
INITDB_DIR = "/docker-entrypoint-initdb.d"


@cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


def _service(name: str) -> dict[str, Any]:
    services = _compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _environment(name: str) -> dict[str, str]:
    """The service's `environment:` as strings (mapping or `KEY=value` list form)."""
    raw = _service(name).get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _resolve(value: str, required: str = "placeholder-from-env-file") -> str:
    """`value` as compose would pass it when only the required variables are set.

    `${X:-default}` gives the default, `${X:?message}` stands for a value the operator must
    set (replaced by `required`); a bare `${X}` has no value here and fails the test.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        op = match.group("op")
        if op is None:
            pytest.fail(f"{value!r}: ${{{match.group('name')}}} has neither a default nor :?")
        return match.group("arg") if "-" in op else required

    return _INTERPOLATION.sub(replace, value)


def _published(name: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port of the service."""
    result = []
    for entry in _service(name).get("ports", []):
        if isinstance(entry, dict):
            result.append(
                (str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"]))
            )
            continue
        parts = str(entry).split(":")
        assert len(parts) == 3, f"{name}: publish {entry!r} as HOST_IP:HOST_PORT:CONTAINER_PORT"
        result.append((parts[0], int(parts[1]), int(parts[2].split("/")[0])))
    return result


def _healthcheck_argv(name: str) -> list[str]:
    healthcheck = _service(name).get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    test = healthcheck["test"]
    return shlex.split(test) if isinstance(test, str) else [str(part) for part in test]


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` as {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        listener, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[listener] = (host, int(port))
    return result


def _allowed_variables(cls: type[ServiceSettings]) -> set[str]:
    """Every environment variable the settings code reads for `cls`, plus its secrets."""
    names = {field.upper() for field in cls.model_fields}
    names |= {env_name(cls, field) for field in SERVICE_VARIABLE_FIELDS}
    names |= {secret for secret in SECRETS if _secret_owner(secret) == cls.service_name}
    return names


def _secret_owner(secret: str) -> str:
    return secret.split("_", 1)[0].lower()


# --- the three services ------------------------------------------------------------------


def test_the_three_services_are_defined_and_run_their_own_module() -> None:
    services = _compose()["services"]
    assert {"keys", "audit", "usage"} <= set(services)
    assert set(APPS) == {"keys", "audit", "usage"}
    for name in APPS:
        assert _service(name)["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").is_file()


@pytest.mark.parametrize("name", APPS)
def test_service_is_built_from_the_repository_dockerfile(name: str) -> None:
    build = _service(name)["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / dockerfile).is_file()


def test_dockerfile_runs_as_a_non_root_user_without_dev_extras() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.MULTILINE)
    assert users, "the final stage of the Dockerfile sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, re.MULTILINE))
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        for base in re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    ]
    assert bases, "the Dockerfile has no FROM"
    assert set(bases) == {"python:3.11-slim"}
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs
    assert not [line for line in installs if "[dev]" in line or "-e " in line]


@pytest.mark.parametrize("name", APPS)
def test_published_port_is_the_settings_default_port(name: str) -> None:
    port = SETTINGS[name].default_http_port
    assert _published(name) == [("127.0.0.1", port, port)]


@pytest.mark.parametrize("name", APPS)
def test_port_variable_is_the_default_port(name: str) -> None:
    cls = SETTINGS[name]
    assert _environment(name)[env_name(cls, "http_port")] == str(cls.default_http_port)


@pytest.mark.parametrize("name", APPS)
def test_every_variable_given_to_a_service_is_read_by_its_settings(name: str) -> None:
    given = set(_environment(name))
    unknown = given - _allowed_variables(SETTINGS[name])
    assert not unknown, f"{name}: the settings code reads no {sorted(unknown)}"


@pytest.mark.parametrize("name", APPS)
def test_environment_loads_into_the_settings_class(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values themselves pass validation and point at the compose services."""
    every_variable = set().union(*(_allowed_variables(cls) for cls in SETTINGS.values()))
    for variable in every_variable:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in _environment(name).items():
        monkeypatch.setenv(variable, _resolve(value))
    cls = SETTINGS[name]
    settings = cls()
    assert settings.http_port == cls.default_http_port
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - published on loopback by compose
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.service_database == f"postgresql://instagen:instagen@postgres:5432/{name}"
    assert settings.log_level == "INFO"
    if isinstance(settings, KeysSettings):  # the console reads the other two services
        assert (settings.keys_audit_url, settings.keys_usage_url) == (
            "http://audit:8001",
            "http://usage:8002",
        )


def test_usage_runs_its_ingest_and_its_limit_counter_as_two_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `make up` does (devstack.services): the same image and module, one role each,
    the counter's probe on a port of its own, both against the usage database."""
    counter = _service("usage-limits")
    assert counter["command"] == _service("usage")["command"]
    assert counter["build"] == _service("usage")["build"]
    assert _environment("usage")["USAGE_ROLE"] == "ingest"
    given = _environment("usage-limits")
    assert given["USAGE_ROLE"] == "limits"
    assert not set(given) - _allowed_variables(UsageSettings)
    every_variable = set().union(*(_allowed_variables(cls) for cls in SETTINGS.values()))
    for variable in every_variable:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in given.items():
        monkeypatch.setenv(variable, _resolve(value))
    settings = UsageSettings()
    assert settings.usage_role == "limits"
    assert settings.http_port != UsageSettings.default_http_port
    assert f":{settings.http_port}/ready" in " ".join(counter["healthcheck"]["test"])
    assert settings.service_database == "postgresql://instagen:instagen@postgres:5432/usage"
    assert set(counter["depends_on"]) == set(_service("usage")["depends_on"])


def test_each_secret_goes_to_its_service_only_and_must_be_set() -> None:
    assert SECRETS, "devstack/services.py generates no secrets"
    for secret in SECRETS:
        owner = _secret_owner(secret)
        assert owner in SETTINGS, f"{secret}: no service {owner!r} to own it"
        value = _environment(owner).get(secret)
        assert value is not None, f"{owner} does not get {secret}"
        assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", value), (
            f"{secret} must come from .env with no default: ${{{secret}:?message}}, not {value!r}"
        )
        for other in APPS:
            if other != owner:
                assert secret not in _environment(other), f"{other} gets {owner}'s {secret}"


@pytest.mark.parametrize("name", APPS)
def test_healthcheck_asks_ready_on_the_service_port(name: str) -> None:
    argv = _healthcheck_argv(name)
    assert argv[:3] == ["CMD", "python", "-c"], "the slim image has no curl: use python"
    code = argv[3]
    compile(code, f"{name} healthcheck", "exec")
    assert "urllib.request" in code
    assert f"http://127.0.0.1:{SETTINGS[name].default_http_port}/ready" in code


@pytest.mark.parametrize("name", APPS)
def test_service_waits_for_its_infrastructure(name: str) -> None:
    depends_on = _service(name)["depends_on"]
    assert depends_on["kafka"]["condition"] == "service_healthy"
    assert depends_on["kafka-init"]["condition"] == "service_completed_successfully"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    for dependency, spec in depends_on.items():
        if spec["condition"] == "service_healthy":
            assert _service(dependency).get("healthcheck"), f"{dependency} has no healthcheck"


# --- Kafka -------------------------------------------------------------------------------


def test_kafka_is_the_official_image_4x_in_kraft_mode() -> None:
    kafka = _service("kafka")
    repository, _, tag = kafka["image"].partition(":")
    assert repository == "apache/kafka"
    assert re.fullmatch(r"4\.\d+\.\d+", tag), f"want a pinned 4.x tag, got {tag!r}"
    env = _environment("kafka")
    assert env["KAFKA_PROCESS_ROLES"].split(",") == ["broker", "controller"]
    assert not [name for name in env if "ZOOKEEPER" in name]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [voter.split("@")[0] for voter in voters] == [env["KAFKA_NODE_ID"]]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= MIN_PARTITIONS


def test_kafka_listeners_serve_containers_and_host_clients() -> None:
    env = _environment("kafka")
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    assert set(protocols) == set(listeners)
    assert controller in listeners
    assert controller not in advertised
    assert set(advertised) <= set(listeners)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    # Containers: the services' bootstrap address is advertised, on a port the broker binds.
    by_address = {f"{host}:{port}": name for name, (host, port) in advertised.items()}
    for app in APPS:
        bootstrap = _environment(app)["KAFKA_BOOTSTRAP_SERVERS"]
        assert bootstrap in by_address, f"{app}: {bootstrap} is not an advertised listener"
        host, port = advertised[by_address[bootstrap]]
        assert host in ("kafka", _service("kafka").get("hostname"))
        assert listeners[by_address[bootstrap]][1] == port

    # Host: a client using the settings' default reaches a listener published there,
    # and that listener advertises the same address back.
    host_default = ServiceSettings.model_fields["kafka_bootstrap_servers"].default
    assert host_default == "127.0.0.1:9092"
    assert host_default in by_address, "no listener advertises the host clients' address"
    external = by_address[host_default]
    host, port = advertised[external]
    assert (host, port, listeners[external][1]) in _published("kafka")


def test_kafka_init_creates_every_topic_with_enough_partitions() -> None:
    init = _service("kafka-init")
    assert init["image"] == _service("kafka")["image"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init.get("restart", "no") == "no"
    entrypoint = init.get("entrypoint") or []
    assert entrypoint[:1] == ["/bin/sh"] and "e" in entrypoint[1], "a failed create must fail"
    script = init["command"]
    script = script[-1] if isinstance(script, list) else script

    internal = _environment(APPS[0])["KAFKA_BOOTSTRAP_SERVERS"]
    partitions: dict[str, int] = {}
    compacted: set[str] = set()
    for line in _resolve(script).splitlines():
        argv = shlex.split(line)
        if "--create" not in argv:
            continue
        assert argv[0] == "/opt/kafka/bin/kafka-topics.sh"
        assert "--if-not-exists" in argv, line
        assert argv[argv.index("--bootstrap-server") + 1] == internal
        topic = argv[argv.index("--topic") + 1]
        assert topic not in partitions, f"{topic} is created twice"
        partitions[topic] = int(argv[argv.index("--partitions") + 1])
        assert int(argv[argv.index("--replication-factor") + 1]) == 1
        if "--config" in argv and argv[argv.index("--config") + 1] == "cleanup.policy=compact":
            compacted.add(topic)

    assert set(partitions) == set(ALL_TOPICS)
    assert compacted == set(COMPACTED_TOPICS), "the state topics are compacted, no other"
    too_few = {topic: n for topic, n in partitions.items() if n < MIN_PARTITIONS}
    assert not too_few, f"fewer than {MIN_PARTITIONS} partitions: {too_few}"


# --- PostgreSQL --------------------------------------------------------------------------


def test_postgres_credentials_match_the_services_and_the_native_stack() -> None:
    postgres = _service("postgres")
    assert postgres["image"].partition(":")[0] == "postgres"
    env = _environment("postgres")
    assert env["POSTGRES_USER"] == devstack_postgres.USER == "instagen"
    assert env["POSTGRES_PASSWORD"] == devstack_postgres.PASSWORD == "instagen"
    for app in APPS:
        url = urlsplit(_environment(app)["DATABASE_URL"])
        assert (url.scheme, url.username, url.password) == ("postgresql", "instagen", "instagen")
        assert (url.hostname, url.port) == ("postgres", 5432)
    assert _healthcheck_argv("postgres")[1] == "pg_isready"
    default_port = urlsplit(DEFAULT_SERVER_URL).port
    assert _published("postgres") == [("127.0.0.1", default_port, 5432)]


def test_postgres_init_script_creates_keys_audit_and_usage() -> None:
    mounts = [str(volume).split(":") for volume in _service("postgres")["volumes"]]
    scripts = [ROOT / source for source, target, *_ in mounts if target.startswith(INITDB_DIR)]
    assert scripts == [ROOT / "infra" / "postgres" / "init-databases.sql"]
    sql = scripts[0].read_text()
    created = re.findall(r'^\s*CREATE\s+DATABASE\s+"?(\w+)"?', sql, re.IGNORECASE | re.MULTILINE)
    assert sorted(created) == ["audit", "keys", "usage"]
    assert set(created) == set(SETTINGS) == set(devstack_postgres.DATABASES)


def test_broker_and_database_keep_their_data_in_named_volumes() -> None:
    assert _environment("kafka")["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    declared = set(_compose().get("volumes") or {})
    data_dirs = {"kafka": "/var/lib/kafka/data", "postgres": "/var/lib/postgresql/data"}
    for name, target in data_dirs.items():
        mounts = [str(volume).split(":") for volume in _service(name)["volumes"]]
        sources = [source for source, mount, *_ in mounts if mount == target]
        assert len(sources) == 1, f"{name}: {target} is not mounted"
        assert sources[0] in declared, f"{name}: {target} is not a named volume"
