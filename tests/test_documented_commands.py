"""Every command that the README and the docs show still parses: none can drift from the code.

Commands are read from the Markdown files (fenced blocks and inline code). A `c3ae ...`,
`python -m c3ae_utils....` or `python bench/....py` command is parsed by the real argument
parser of the module it reaches (nothing runs); a `make ...` command is dry-run (`make -n`).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from c3ae_utils import cli

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "data/README.md", "bench/README.md", "figures/README.md", "models/README.md",
             *(str(path.relative_to(REPO)) for path in sorted((REPO / "docs").glob("*.md")))]
COMMAND = re.compile(r"^(c3ae |python3? -m c3ae_utils\.|python3? bench/|make )")


def _code_lines(text: str) -> list[str]:
    """Lines of fenced code blocks and the contents of inline code spans."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            lines.append(line.strip())
        else:
            lines.extend(span.strip() for span in re.findall(r"`([^`]+)`", line))
    return lines


def documented_commands() -> list[tuple[str, str]]:
    """(document, command) for every command the documents show, comments removed."""
    found = []
    for name in DOCUMENTS:
        path = REPO / name
        if not path.exists():
            continue
        for line in _code_lines(path.read_text()):
            command = line.split("  #")[0].split(" # ")[0].strip()
            if COMMAND.match(command):
                found.append((name, command))
    return found


COMMANDS = documented_commands()


def _parser_of_module(module_name: str):
    module = importlib.import_module(module_name)
    return module.build_parser()


def _parser_of_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _parse(words: list[str]) -> None:
    """Parse `words` (a documented command) with the parser of the code it reaches."""
    if words[0] == "c3ae":
        assert words[1] in cli.COMMANDS, f"`c3ae {words[1]}` is not a command of c3ae_utils.cli"
        _parser_of_module(cli.COMMANDS[words[1]][0]).parse_args(words[2:])
    elif words[1] == "-m":
        _parser_of_module(words[2]).parse_args(words[3:])
    else:
        _parser_of_script(REPO / words[1]).parse_args(words[2:])


def test_the_documents_show_commands_of_every_kind():
    kinds = {command.split()[0] if not command.startswith("python") else command.split()[1]
             for _, command in COMMANDS}
    assert {"c3ae", "make", "-m"} <= kinds and any(c.startswith("python bench/") for _, c in COMMANDS)


@pytest.mark.parametrize(("document", "command"), [c for c in COMMANDS if not c[1].startswith("make ")])
def test_documented_command_parses(document: str, command: str) -> None:
    words = shlex.split(command.replace("[", "").replace("]", ""))
    try:
        _parse(words)
    except SystemExit as error:  # argparse exits on a bad command line
        pytest.fail(f"{document}: `{command}` does not parse (exit {error.code}).")


@pytest.mark.parametrize(("document", "command"), [c for c in COMMANDS if c[1].startswith("make ")])
def test_documented_make_target_exists(document: str, command: str) -> None:
    # Only the targets: variables like DATASET=a|b list choices and are not run.
    targets = [word for word in command.split()[1:] if "=" not in word and not word.startswith("[")]
    result = subprocess.run(["make", "-n", *targets], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{document}: `{command}`: {result.stderr.strip()}"
