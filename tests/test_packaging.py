"""Packaging rules checked as data: metadata, declared imports, install sets and the locks the images use.

After a change to any requirements*.txt, `make lock` regenerates locks/; the lock checks below fail until then.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECTS = sorted(p for p in ROOT.glob("**/pyproject.toml") if not {".venv", ".git", "node_modules"} & set(p.parts))
PACKAGE_DIRS = [p.parent for p in PYPROJECTS]
IMAGES = ("gateway", "lobby", "measurement", "simulation", "storage")
TEST_OR_BENCH_ONLY = {
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "hypothesis",
    "schemathesis",
    "asgi-lifespan",
    "pyfar",
    "pyrato",
    "matplotlib",
}
SPDX_LICENSES = {"MIT", "Apache-2.0", "BSD-3-Clause"}  # the ones this project may use
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[\[<>=!~;\s]", spec.strip(), maxsplit=1)[0])


def pyproject(package_dir: Path) -> dict:
    return tomllib.loads((package_dir / "pyproject.toml").read_text())


def declared(package_dir: Path) -> set[str]:
    project = pyproject(package_dir)["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {requirement_name(spec) for spec in specs}


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a requirements file, following ``-r`` includes."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            found.update(pins((path.parent / line[3:].strip()).resolve()))
        elif match := PIN.match(line):
            found[normalize(match.group(1))] = match.group(2)
    return found


def imported_modules(package_dir: Path) -> dict[str, set[str]]:
    """Top-level modules imported by the package's own code -> the files importing them."""
    src = package_dir / "src"
    own = {p.name for p in src.iterdir() if (p / "__init__.py").is_file()}
    found: dict[str, set[str]] = {}
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def dockerfile_packages(image: str) -> list[Path]:
    """The suite's own packages an image installs (the paths its `pip install` lines name)."""
    text = (ROOT / image / "Dockerfile").read_text()
    return [ROOT / m for m in re.findall(r"(?:-e )?\./((?:libs|tools)/\w+|\w+)(?=[\s\\]|$)", text)]


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_license_is_an_spdx_string_and_the_build_backend_is_bounded(package_dir: Path) -> None:
    data = pyproject(package_dir)
    assert data["project"]["license"] in SPDX_LICENSES
    for spec in data["build-system"]["requires"]:
        assert re.search(r">=\s*[1-9]", spec) and "<" in spec, f"unbounded build requirement {spec!r}"


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_have_meaningful_floors(package_dir: Path) -> None:
    for spec in pyproject(package_dir)["project"].get("dependencies", []):
        if requirement_name(spec).startswith("sonalyze-"):
            continue
        floor = re.search(r">=\s*([0-9.]+)", spec)
        assert floor and any(part != "0" for part in floor.group(1).split(".")), f"no real floor in {spec!r}"


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_is_a_declared_dependency(package_dir: Path) -> None:
    distributions = packages_distributions()
    names = declared(package_dir)
    undeclared = {}
    for module, files in imported_modules(package_dir).items():
        owners = {normalize(d) for d in distributions.get(module, [module])}
        if not owners & names:
            undeclared[module] = sorted(files)
    assert not undeclared, f"{package_dir.name} imports undeclared packages: {undeclared}"


@pytest.mark.parametrize("image", IMAGES)
def test_image_lock_is_current_and_covers_what_the_image_installs(image: str) -> None:
    lock = pins(ROOT / "locks" / f"{image}.txt")
    for name, version in pins(ROOT / image / "requirements.txt").items():
        assert lock.get(name) == version, f"locks/{image}.txt has {name} {lock.get(name)}, wanted {version}: make lock"
    for package_dir in dockerfile_packages(image):
        missing = {n for n in declared(package_dir) if not n.startswith("sonalyze-")} - set(lock)
        missing -= {
            requirement_name(s)
            for s in pyproject(package_dir)["project"].get("optional-dependencies", {}).get("testing", [])
        }
        assert not missing, f"{image} installs {package_dir.name}, whose {missing} are not in locks/{image}.txt"


@pytest.mark.parametrize("image", IMAGES)
def test_image_lock_is_hash_checked_and_consistent_with_the_constraints(image: str) -> None:
    text = (ROOT / "locks" / f"{image}.txt").read_text()
    constraints = pins(ROOT / "locks" / "constraints.txt")
    lock = pins(ROOT / "locks" / f"{image}.txt")
    assert lock
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if PIN.match(block):
            assert "--hash=sha256:" in block, f"locks/{image}.txt: no hash for {block.splitlines()[0]}"
    for name, version in lock.items():
        assert constraints.get(name) == version, (
            f"{name}: locks/{image}.txt {version}, constraints {constraints.get(name)}"
        )


@pytest.mark.parametrize("top_level", ["requirements.txt", "requirements-dev.txt", "requirements-bench.txt"])
def test_constraints_are_current(top_level: str) -> None:
    constraints = pins(ROOT / "locks" / "constraints.txt")
    for name, version in pins(ROOT / top_level).items():
        assert constraints.get(name) == version, f"constraints have {name} {constraints.get(name)}: make lock"


def test_build_lock_matches_the_bound_of_every_pyproject() -> None:
    (version,) = [v for n, v in pins(ROOT / "locks" / "build.txt").items() if n == "setuptools"]
    assert pins(ROOT / "requirements-build.txt")["setuptools"] == version
    major = int(version.split(".")[0])
    for package_dir in PACKAGE_DIRS:
        (spec,) = pyproject(package_dir)["build-system"]["requires"]
        low, high = (int(x) for x in re.findall(r"[<>]=?\s*([0-9]+)", spec))
        assert low <= major < high, f"{package_dir.name}: setuptools {version} outside {spec}"


def test_run_set_holds_no_test_or_bench_package() -> None:
    assert not set(pins(ROOT / "requirements.txt")) & TEST_OR_BENCH_ONLY
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: \$\(VENV\)/\.installed-run$", makefile, re.MULTILINE)
    assert re.search(r"^demo: \$\(VENV\)/\.installed-run$", makefile, re.MULTILINE)


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_installs_only_from_its_hash_checked_lock(image: str) -> None:
    text = (ROOT / image / "Dockerfile").read_text()
    requirement_files = re.findall(r"-r (\S+)", text)
    assert set(requirement_files) == {"locks/build.txt", f"locks/{image}.txt"}
    for line in re.findall(r"pip [^\n]* install [^\n]*", text):
        if "-r " in line:
            assert "--require-hashes" in line
        else:
            assert "--no-deps" in line, f"{image}: {line!r} may resolve dependencies outside the lock"


@pytest.mark.parametrize("image", IMAGES)
def test_images_install_the_suite_as_plain_packages_and_keep_no_sources(image: str) -> None:
    text = (ROOT / image / "Dockerfile").read_text()
    assert not re.search(r"install [^\n]*(?:\\\n[^\n]*)*\s-e\s", text), f"{image}: an editable install"
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.findall(r"COPY --from=builder (\S+)", final_stage) == ["/opt/venv"]


@pytest.mark.parametrize("service", ["lobby", "storage"])
def test_the_built_package_carries_its_migrations(service: str, tmp_path: Path) -> None:
    """The image migrates from the installed package: alembic.ini, env.py, the template and every version."""
    source = shutil.copytree(ROOT / service, tmp_path / service, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
               "--wheel-dir", str(tmp_path / "wheels"), str(source)]  # setuptools builds in the copy  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if "/migrations/" in name}
    migrations = ROOT / service / "src" / f"sonalyze_{service}" / "migrations"
    expected = {
        str(path.relative_to(migrations.parent.parent)).replace("\\", "/")
        for path in migrations.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {f"sonalyze_{service}/migrations/{name}" for name in ("alembic.ini", "env.py", "script.py.mako")} <= expected
    assert any("/versions/" in name for name in expected)
    assert shipped == expected
