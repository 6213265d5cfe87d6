"""Whoever hosts the course points every badge and setup cell at their repository with one command, and on Colab the
setup cell either fetches the course or says clearly why it could not (no network: it clones a local repository)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import host_course  # noqa: E402


def test_every_notebook_and_the_readme_point_at_one_home():
    homes = host_course.homes()
    notebooks = {name: home for name, home in homes.items() if name != "README.md"}
    assert len(notebooks) == 26, sorted(notebooks)
    assert len({home for home in notebooks.values()}) == 1, set(notebooks.values())
    url, branch, badge_url, badge_branch = next(iter(notebooks.values()))
    assert (url, branch) == (badge_url, badge_branch), "the badges open another repository than the setup cells clone"
    assert homes["README.md"][0] == url, "the README clones another repository than the notebooks"


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    """solutions/, notebooks/ and README.md copied to a temporary folder that host_course works on."""
    for folder in host_course.FOLDERS:
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder)
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    monkeypatch.setattr(host_course, "ROOT", str(tmp_path))
    return tmp_path


def test_one_command_moves_every_badge_setup_cell_and_the_readme(course_copy):
    old_url = host_course.homes()["README.md"][0]
    changed = host_course.rewrite("https://github.com/some-university/pp-course.git", "fall-2026")
    assert len(changed) == 27
    homes = host_course.homes()
    new = "https://github.com/some-university/pp-course"
    assert {home for name, home in homes.items() if name != "README.md"} == {(new, "fall-2026", new, "fall-2026")}
    assert homes["README.md"][0] == new
    text = "".join(open(os.path.join(course_copy, name), encoding="utf-8").read() for name in homes)
    assert old_url not in text
    assert host_course.rewrite("https://github.com/some-university/pp-course", "fall-2026") == []  # idempotent


def test_a_copy_that_disagrees_is_seen(course_copy):
    """The negative control of the agreement test: one notebook pointing elsewhere shows as a second home."""
    import nbformat
    path = course_copy / "solutions" / "03_gpipe.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("/blob/main/", "/blob/other/")
    nbformat.write(nb, path)
    assert len(set(v for k, v in host_course.homes().items() if k != "README.md")) == 2


@pytest.mark.parametrize("url, branch", [("https://gitlab.com/me/course", "main"), ("git@github.com:me/course", "main"),
                                         ("https://github.com/me/course", "a..b"), ("https://github.com/me", "main")])
def test_addresses_colab_cannot_open_are_refused(url, branch):
    with pytest.raises(ValueError, match="GitHub|branch"):
        host_course.check_home(url, branch)


def _run_setup_cell(url: str, destination: str, monkeypatch) -> None:
    """The setup cell as Colab runs it (google.colab imported), cloning ``url`` into ``destination``."""
    source = host_course.setup_cell(url, "main").replace("/content/course", destination)
    # without the IPython magic, and without importing labs here (this process has its own)
    source = "\n".join(line for line in source.splitlines() if not line.startswith(("%", "import labs")))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(source, "setup cell", "exec"), {})


def test_on_colab_the_setup_cell_clones_the_course_and_finds_labs(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "labs").mkdir(parents=True)
    (home / "labs" / "__init__.py").write_text("")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(home)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(home)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "course"], check=True)
    destination = str(tmp_path / "content-course")
    _run_setup_cell(f"file://{home}", destination, monkeypatch)
    assert os.path.isfile(os.path.join(destination, "labs", "__init__.py"))
    assert sys.path[0] == destination


def test_on_colab_a_clone_that_fails_says_why_and_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError) as failure:
        _run_setup_cell(f"file://{tmp_path}/no-such-repository", str(tmp_path / "content-course"), monkeypatch)
    message = str(failure.value)
    assert "could not fetch the course from file://" in message and "tools/host_course.py" in message
    assert "does not exist" in message or "not appear to be a git repository" in message  # git's own reason
