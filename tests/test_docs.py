"""Every code block in the README and docs/ runs as written.

Python blocks run in order, one namespace per file, in a temporary folder (GPU blocks on Numba's CUDA
simulator). Shell lines that call ``exactrev`` or ``python -m benchmarks.gpu`` are parsed by their own
argument parsers (running them is the job of the README's commands and of CI); lines that create
environments or install packages are left to CI, which runs the README's test command verbatim.
"""

import pathlib
import re
import shlex

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path, language):
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def shell_commands(body):
    """Each command of each line, split at && and ;, as argument lists (comments dropped, and an
    ``mpiexec -n N`` prefix too: what it starts is checked)."""
    for line in body.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        for part in re.split(r"&&|;", line):
            words = shlex.split(part)
            if words[:2] == ["mpiexec", "-n"]:
                words = words[3:]
            if words:
                yield words


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")], ids=lambda p: p.name)
def test_python_blocks_run_as_written(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for body in blocks(path, "python"):
        exec(compile(body, str(path), "exec"), namespace)


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "bash")], ids=lambda p: p.name)
def test_shell_commands_parse(path):
    from benchmarks.gpu import build_parser as gpu_parser
    from exactrev.faces.cli import build_parser

    checked = 0
    for words in shell_commands("\n".join(blocks(path, "bash"))):
        if words[0] == "exactrev":
            build_parser().parse_args(words[1:])
            checked += 1
        elif words[:3] == ["python", "-m", "benchmarks.gpu"]:
            gpu_parser().parse_args(words[3:])
            checked += 1
        else:
            assert words[0] in {"python3", "python", ".", "pip", "pytest", "asv", "cd", "git",
                                "optuna-dashboard"}, words
    assert checked or path.name == "README.md" and "pytest" in path.read_text()


def test_every_docs_file_is_covered():
    fenced = {p.name for p in DOCS if FENCE.search(p.read_text())}
    assert {"README.md", "engine.md", "hypergradients.md", "gpu.md"} <= fenced
