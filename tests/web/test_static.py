"""The dashboard's files as shipped in the package: self-contained (nothing fetched from the internet),
every module and asset they name is there, and the page keeps a strict Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import processman

STATIC = Path(processman.__file__).parent / "web" / "static"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def files(suffix: str) -> list[Path]:
    found = sorted(STATIC.glob(f"*{suffix}"))
    assert found, f"no {suffix} files in {STATIC}"
    return found


def test_nothing_is_loaded_from_outside_the_package() -> None:
    for path in STATIC.iterdir():
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", text), f"{path.name} names an outside URL"


def test_every_imported_module_exists() -> None:
    for path in files(".js"):
        for target in re.findall(r"""^import .* from "([^"]+)";$""", path.read_text(), re.M):
            assert target.startswith("./"), f"{path.name}: {target} is not a relative module"
            assert (STATIC / target).is_file(), f"{path.name} imports {target}, which is missing"


def test_the_page_names_only_files_that_exist_with_relative_urls() -> None:
    html = (STATIC / "index.html").read_text()
    for attribute, target in re.findall(r'\b(src|href)="([^"#][^"]*)"', html):
        if target.startswith("data:"):
            continue
        # Relative, so the same page works at / (processman) and at /pm/ (through PocketBase).
        assert target.startswith("./"), f"{attribute}={target} must be relative"
        assert (STATIC / target).is_file(), f"{target} is missing"


def test_the_page_keeps_a_strict_content_security_policy() -> None:
    html = (STATIC / "index.html").read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert policy is not None
    directives = dict(part.strip().split(" ", 1) for part in policy.group(1).split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "<script>" not in html and " style=" not in html  # nothing inline that the policy would block


def test_the_whole_dashboard_stays_small() -> None:
    total = sum(path.stat().st_size for path in STATIC.iterdir())
    assert total < 150_000, f"the dashboard weighs {total} bytes"
