"""The package is versioned with the server: pyproject's `version` and `__version__`
are the workspace version of the repository's Cargo.toml."""

from __future__ import annotations

import re
from pathlib import Path

import bonafide

SDK = Path(__file__).resolve().parents[1]


def test_the_version_is_the_workspace_version() -> None:
    cargo = (SDK.parents[1] / "Cargo.toml").read_text()
    section = re.search(r"^\[workspace\.package\]\n(.*?)(?=^\[|\Z)", cargo, re.S | re.M)
    assert section is not None, "no [workspace.package] in Cargo.toml"
    workspace = re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    assert workspace is not None, "no workspace version in Cargo.toml"
    project = re.search(r'^version\s*=\s*"([^"]+)"', (SDK / "pyproject.toml").read_text(), re.M)
    assert project is not None
    assert project.group(1) == workspace.group(1), "pyproject.toml `version` differs from the workspace version"
    assert bonafide.__version__ == workspace.group(1), "bonafide.__version__ differs from the workspace version"
