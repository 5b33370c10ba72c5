"""Every CLI command resolves, answers --help, and documents each of its options."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from lmstack import cli
from lmstack.config import strip_optional


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_command_resolves_and_documents_its_options(name, capsys):
    fn = cli._resolve(cli.COMMANDS[name][0])
    assert callable(fn) and cli.COMMANDS[name][1], f"{name}: no summary"
    assert (inspect.getdoc(fn) or "").strip(), f"{name}: {fn.__qualname__} has no docstring"
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: lmstack {name}")
    docs = cli._param_docs(fn)
    hints = typing.get_type_hints(fn)
    for param in inspect.signature(fn).parameters.values():
        if dataclasses.is_dataclass(strip_optional(hints.get(param.name, str))):
            assert "--config" in help_text and "config keys" in help_text, f"{name}: config keys not listed"
            continue
        assert docs.get(param.name), f"lmstack {name}: option '{param.name}' has no line in the docstring's Args"
        shown = "".join(help_text.split())  # argparse wraps lines (also after hyphens)
        assert "".join(docs[param.name].split()) in shown, f"lmstack {name}: '{param.name}' help not shown"


@pytest.mark.parametrize("old, new", sorted(cli.ALIASES.items()))
def test_alias_runs_the_command(old, new, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([old, "--help"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith(f"usage: lmstack {new}")
    assert new in cli.COMMANDS and old not in cli.COMMANDS
