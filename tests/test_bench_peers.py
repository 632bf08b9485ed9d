"""``benchmarks/peers.py`` builds a peer the module proxy will not serve from a fetched snapshot
(a bare git directory): the pinned tag must resolve to the pinned commit, the sources go to the
cache with ``git archive`` and are built there. Real git and the real Go toolchain, on a
one-file Go program with no dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import peers  # noqa: E402

# Only built with the tag: a build that drops the Spec's tags finds no Go file and fails.
MAIN_GO = """//go:build snapshot_tag

package main

func main() { println("built from the snapshot") }
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_all(work: Path, message: str) -> str:
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[peers.Spec, Path]:
    """A bare git directory under a mirrors root, as fetched, with tag v0.1.0 on one commit and
    a later commit; the cache in ``tmp_path``; the Spec pinning v0.1.0 to its commit."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "go.mod").write_text("module example.invalid/hello\n\ngo 1.21\n")
    (work / "main.go").write_text(MAIN_GO)
    tagged = commit_all(work, "hello")
    git(work, "tag", "v0.1.0")
    (work / "README").write_text("later\n")
    commit_all(work, "later")
    mirrors = tmp_path / "mirrors"
    bare = mirrors / "acme+hello" / "repo"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    monkeypatch.setenv("SWAPPER_BENCH_MIRRORS", str(mirrors))
    monkeypatch.delenv("SWAPPER_BENCH_GIT_HELLO", raising=False)
    monkeypatch.setattr(peers, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(peers, "STATUS", tmp_path / "cache" / "status.json")
    spec = peers.Spec(
        "hello",
        "v0.1.0",
        "snapshot",
        "example.invalid/hello",
        "a test program",
        "snapshot_tag",
        commit=tagged,
        repo="acme/hello",
    )
    monkeypatch.setattr(peers, "SPECS", [spec])
    return spec, bare


def status(tmp_path: Path) -> dict[str, dict[str, object]]:
    loaded: dict[str, dict[str, object]] = json.loads(
        (tmp_path / "cache" / "status.json").read_text()
    )
    return loaded


def test_a_snapshot_peer_is_built_at_its_pinned_commit_from_sources_exported_into_the_cache(
    snapshot: tuple[peers.Spec, Path], tmp_path: Path
) -> None:
    spec, _ = snapshot
    peer = peers.ensure()["hello"]
    assert peer.ok, peer.reason
    assert peer.path is not None
    assert Path(peer.path).is_relative_to(tmp_path / "cache" / "bin")
    ran = subprocess.run([peer.path], capture_output=True, text=True, timeout=30)
    assert ran.stderr.strip() == "built from the snapshot"
    exported = tmp_path / "cache" / "src" / f"hello-v0.1.0-{spec.commit[:12]}"
    assert sorted(p.name for p in exported.iterdir()) == ["go.mod", "main.go"]  # not "later"
    assert peer.commit == spec.commit
    assert spec.commit[:12] in peer.label
    assert status(tmp_path)["hello@v0.1.0"]["commit"] == spec.commit
    assert f"`{spec.commit}`" in peers.versions_table({"hello": peer})


def test_a_tag_that_resolves_to_another_commit_is_refused_and_nothing_is_built(
    snapshot: tuple[peers.Spec, Path], tmp_path: Path
) -> None:
    spec, bare = snapshot
    moved = git(bare, "rev-parse", "main")
    git(bare, "tag", "-f", "v0.1.0", moved)
    peer = peers.ensure()["hello"]
    assert not peer.ok
    assert peer.reason is not None
    assert f"resolves to {moved}" in peer.reason
    assert f"not the pinned {spec.commit}: refused" in peer.reason
    assert not (tmp_path / "cache" / "src").exists()
    assert "refused" in str(status(tmp_path)["hello@v0.1.0"]["failed"])


def test_a_missing_snapshot_is_recorded_with_how_to_fetch_it(
    snapshot: tuple[peers.Spec, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWAPPER_BENCH_MIRRORS", str(tmp_path / "nowhere"))
    peer = peers.ensure()["hello"]
    assert not peer.ok
    recorded = str(status(tmp_path)["hello@v0.1.0"]["failed"])
    assert "fetch github:acme/hello with the search tool's fetch" in recorded
    assert peer.reason == recorded


def test_the_git_directory_can_be_named_for_one_peer_by_the_environment(
    snapshot: tuple[peers.Spec, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, bare = snapshot
    moved = tmp_path / "elsewhere.git"
    bare.rename(moved)
    monkeypatch.setenv("SWAPPER_BENCH_GIT_HELLO", str(moved))
    assert peers.git_dir(spec) == moved
    assert peers.export_snapshot(spec, tmp_path / "out") is None
    assert (tmp_path / "out" / "main.go").read_text() == MAIN_GO
