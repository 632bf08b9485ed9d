"""What the runtime stage holds: swapper's virtualenv and no way to install or compile."""

from __future__ import annotations

from image.running import run


def test_the_virtualenv_python_cannot_import_pip_or_setuptools(container: str) -> None:
    for module in ("pip", "setuptools", "pkg_resources", "_distutils_hack"):
        result = run(container, "python", "-c", f"import {module}")
        assert result.returncode == 1, module
        assert "ModuleNotFoundError" in result.stderr, module


def test_the_system_python_cannot_import_pip_or_setuptools_either(container: str) -> None:
    for module in ("pip", "setuptools"):
        result = run(container, "python3", "-I", "-c", f"import {module}")
        assert "ModuleNotFoundError" in result.stderr, (module, result.stderr)
    # ensurepip would install pip from its bundled wheels; they are gone.
    result = run(container, "python3", "-I", "-m", "ensurepip", "--root", "/tmp/ensurepip")
    assert result.returncode != 0
    assert "No such file or directory" in result.stderr and ".whl" in result.stderr


def test_no_installer_or_compiler_is_on_the_path(container: str) -> None:
    tools = ["pip", "pip3", "easy_install", "gcc", "cc", "c++", "clang", "make", "ld"]
    result = run(container, "sh", "-c", "command -v " + " ".join(tools) + "; true")
    assert result.stdout.strip() == ""


def test_swapper_runs_from_the_installed_package_not_a_source_tree(container: str) -> None:
    result = run(container, "python", "-c", "import swapper, sys; print(swapper.__file__)")
    assert result.stdout.strip() == "/opt/swapper/lib/python3.11/site-packages/swapper/__init__.py"
    assert run(container, "test", "-e", "/src").returncode == 1


def test_the_sync_kubernetes_client_imports_without_its_dropped_asyncio_copy(
    container: str,
) -> None:
    assert run(container, "python", "-c", "import kubernetes.aio").returncode == 1
    imports = "import kubernetes, kubernetes.client, kubernetes.config, kubernetes.watch"
    assert run(container, "python", "-c", imports).returncode == 0


def test_the_byte_code_is_compiled_so_the_read_only_root_needs_no_writes(container: str) -> None:
    script = (
        "import pathlib, sys; root = pathlib.Path('/opt/swapper/lib/python3.11/site-packages');"
        "missing = [str(p) for p in (root / 'swapper').rglob('*.py') if not "
        "list(p.parent.glob('__pycache__/' + p.stem + '.*.pyc'))]; print(missing)"
    )
    assert run(container, "python", "-c", script).stdout.strip() == "[]"
