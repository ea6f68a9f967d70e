"""The README's Python example runs as written, and the controller it trains through the real plugin learns."""

import re
import subprocess
import sys

from conftest import REPO


def readme_example():
    """The ```python block that follows `<!-- python example -->` in README.md."""
    text = (REPO / "README.md").read_text()
    after = text.split("<!-- python example -->", 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.S)
    assert match, "README.md: no ```python block after <!-- python example -->"
    return match.group(1)


def test_readme_example_trains_through_the_real_plugin(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    before, after = map(float, re.search(r"held-out loss (\S+) -> (\S+)", run.stdout).groups())
    assert after < 0.5 * before, run.stdout
