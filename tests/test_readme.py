"""The README's quick start stays the command CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"TEST_COMMAND='(.+)'", ci).group(1)
    assert command in (ROOT / "README.md").read_text()


def test_readme_main_command_runs_the_app():
    readme = (ROOT / "README.md").read_text()
    assert 'pip install torch==2.13.0 && pip install -e . && python app.py' in readme
