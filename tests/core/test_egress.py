"""Webhook targets: link-local (cloud metadata), multicast and unspecified addresses never;
loopback and private networks only when allowed; names checked on what they resolve to."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.egress import Resolver, destination_problem
from core.settings import load_settings

pytestmark = pytest.mark.unit


def _resolver(answers: dict[str, list[str]]) -> Resolver:
    return lambda host, port: answers.get(host, [])


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0:9105/alertmanager",
        "http://240.0.0.1/",
    ],
)
def test_never_allowed(url: str) -> None:
    problem = destination_problem(url, allow_private=True)
    assert problem is not None and ("link-local" in problem or "not a unicast" in problem)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "https://192.168.1.9/",
        "http://100.64.0.1/",
    ],
)
def test_private_only_when_allowed(url: str) -> None:
    assert destination_problem(url, allow_private=True) is None
    problem = destination_problem(url, allow_private=False)
    assert problem is not None and "ALLOW_PRIVATE_TARGETS" in problem


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolver = _resolver(
        {
            "hooks.example.com": ["93.184.215.14"],
            "sneaky.example.com": ["93.184.215.14", "169.254.169.254"],
            "intranet.example.com": ["10.0.0.7"],
            "scoped.example.com": ["fe80::1%eth0"],
        }
    )
    assert destination_problem("https://hooks.example.com/x", allow_private=False, resolver=resolver) is None
    sneaky = destination_problem("https://sneaky.example.com/x", allow_private=True, resolver=resolver)
    assert sneaky is not None and sneaky.startswith("sneaky.example.com resolves to 169.254.169.254")
    assert destination_problem("http://intranet.example.com/", allow_private=True, resolver=resolver) is None
    assert destination_problem("http://intranet.example.com/", allow_private=False, resolver=resolver)
    assert destination_problem("http://scoped.example.com/", allow_private=True, resolver=resolver)
    # a name that does not resolve now is left to the request (which fails and is retried)
    assert destination_problem("https://nowhere.invalid/", allow_private=False, resolver=resolver) is None


def test_prod_refuses_private_targets_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPULSE_API__AUTH_ENABLED", "true")
    assert load_settings(home=tmp_path).alerting.allow_private_targets is True
    assert load_settings(home=tmp_path, env="prod").alerting.allow_private_targets is False
    explicit = load_settings(home=tmp_path, env="prod", alerting={"allow_private_targets": True})
    assert explicit.alerting.allow_private_targets is True
    monkeypatch.setenv("CRYPTOPULSE_ALERTING__ALLOW_PRIVATE_TARGETS", "true")
    assert load_settings(home=tmp_path, env="prod").alerting.allow_private_targets is True
