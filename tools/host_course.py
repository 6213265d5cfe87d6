"""Point every notebook's Colab badge and setup cell (and the README's clone command) at the course's home.

    python tools/host_course.py https://github.com/ORG/REPO              # branch main
    python tools/host_course.py https://github.com/ORG/REPO --branch fall-2026
    python tools/host_course.py --show                                   # where the notebooks point now

Whoever hosts the course (a fork on GitHub, one per class or term) runs this once and commits the result. On Colab
a notebook's first code cell clones ``COURSE_URL`` at ``COURSE_BRANCH`` to /content/course and imports ``labs`` from
there; the "Open in Colab" badge opens ``notebooks/NN_name.ipynb`` of the same repository and branch. Colab opens
notebooks from GitHub only, so the URL must be ``https://github.com/OWNER/REPO``. Both ``solutions/`` and
``notebooks/`` are rewritten in place (sources only: outputs are kept, nothing is executed), so
``tools/make_student_notebooks.py --check`` stays in step. ``tests/test_notebooks.py`` fails when the notebooks and the
README do not all point at one place.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("solutions", "notebooks")
GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9][A-Za-z0-9-]{0,38})/([A-Za-z0-9._-]{1,100}?)(?:\.git)?/?$")
BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
# what the setup cell and the badge say, as written by setup_cell() and badge() below
SETUP_HOME = re.compile(r'^COURSE_URL, COURSE_BRANCH = "([^"]*)", "([^"]*)"', re.M)
BADGE_LINK = re.compile(r"\(https://colab\.research\.google\.com/github/([^/]+)/([^/]+)/blob/([^)]+)/notebooks/"
                        r"([^/)]+)\.ipynb\)")
README_CLONE = re.compile(r"^git clone (\S+) && cd (\S+)$", re.M)


def setup_cell(url: str, branch: str) -> str:
    """The first code cell of every notebook: fetch the course on Colab, find ``labs`` one folder up elsewhere."""
    return f'''# Setup: on Colab this fetches the course; locally it finds `labs` one folder up.
import os, subprocess, sys
COURSE_URL, COURSE_BRANCH = "{url}", "{branch}"  # set by tools/host_course.py
if "google.colab" in sys.modules and not os.path.isdir("/content/course/labs"):
    _git = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", COURSE_BRANCH, COURSE_URL,
                           "/content/course"], capture_output=True, text=True)
    if _git.returncode:
        raise RuntimeError(f"could not fetch the course from {{COURSE_URL}} (branch {{COURSE_BRANCH}}): "
                           f"{{_git.stderr.strip()}}\\nAsk whoever hosts the course for its address (they set it with "
                           f"tools/host_course.py), or upload the course folder to /content/course and run this again.")
for _path in ("/content/course", os.path.abspath("..")):
    if os.path.isdir(os.path.join(_path, "labs")) and _path not in sys.path:
        sys.path.insert(0, _path)
%matplotlib inline
import labs'''


def badge(url: str, branch: str, stem: str) -> str:
    owner, repo = GITHUB.match(url).groups()
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/notebooks/{stem}.ipynb)")


def check_home(url: str, branch: str) -> None:
    """Raise ValueError, saying what to pass, for a URL Colab cannot open or a branch name git would refuse."""
    if not GITHUB.match(url):
        raise ValueError(f"{url!r} is not a GitHub repository address: Colab opens notebooks from GitHub only, so "
                         f"give https://github.com/OWNER/REPO")
    if not BRANCH.match(branch) or ".." in branch:
        raise ValueError(f"{branch!r} is not a branch name git accepts (letters, digits, '.', '_', '-', '/')")


def notebooks() -> list[str]:
    return sorted(p for folder in FOLDERS for p in glob.glob(os.path.join(ROOT, folder, "[0-9][0-9]_*.ipynb")))


def homes() -> dict[str, tuple]:
    """Where each notebook (and the README) points now: path -> (setup URL, branch, badge URL, badge branch)."""
    found = {}
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        setup = next((SETUP_HOME.search(c.source) for c in nb.cells
                      if c.cell_type == "code" and SETUP_HOME.search(c.source)), None)
        link = BADGE_LINK.search(nb.cells[0].source) if nb.cells else None
        found[os.path.relpath(path, ROOT)] = (
            setup.group(1) if setup else None, setup.group(2) if setup else None,
            f"https://github.com/{link.group(1)}/{link.group(2)}" if link else None, link.group(3) if link else None)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        clone = README_CLONE.search(handle.read())
    found["README.md"] = (clone.group(1) if clone else None, None, None, None)
    return found


def rewrite(url: str, branch: str) -> list[str]:
    """Point every notebook and the README at ``url``/``branch``; return the files that changed."""
    check_home(url, branch)
    url = "https://github.com/{}/{}".format(*GITHUB.match(url).groups())
    changed = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        stem = os.path.splitext(os.path.basename(path))[0]
        before = [c.source for c in nb.cells]
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith("# Setup: on Colab"):
                cell.source = setup_cell(url, branch)
        nb.cells[0].source = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)", lambda _: badge(url, branch, stem),
                                    nb.cells[0].source)
        if [c.source for c in nb.cells] != before:
            nbformat.write(nb, path)
            changed.append(os.path.relpath(path, ROOT))
    readme = os.path.join(ROOT, "README.md")
    with open(readme, encoding="utf-8") as handle:
        text = handle.read()
    new = README_CLONE.sub(f"git clone {url} && cd {url.rsplit('/', 1)[1]}", text, count=1)
    if new != text:
        with open(readme, "w", encoding="utf-8") as handle:
            handle.write(new)
        changed.append("README.md")
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="https://github.com/OWNER/REPO")
    parser.add_argument("--branch", default="main", help="the branch Colab opens and clones (default: main)")
    parser.add_argument("--show", action="store_true", help="print where every notebook points now; change nothing")
    args = parser.parse_args(argv)
    if args.show or not args.url:
        for name, (url, branch, badge_url, badge_branch) in homes().items():
            print(f"{name}: clones {url} ({branch or '-'}); badge opens {badge_url} ({badge_branch or '-'})")
        return 0
    try:
        changed = rewrite(args.url, args.branch)
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print("\n".join(f"rewrote {name}" for name in changed) or "every notebook already points there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
