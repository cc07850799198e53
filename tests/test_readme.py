"""The README's commands and configuration table stay true."""

from __future__ import annotations

import re

from deepsynthbody.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    setup = README.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", setup)


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    serve, test = _commands()
    assert serve.endswith("deepsynthbody serve") and test.endswith("pytest")
    assert test in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`DSB_{name.upper()}" in README, name
