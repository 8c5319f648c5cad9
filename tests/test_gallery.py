"""The gallery page: rendered in headless Chromium, every referenced image exists and loads."""

import html.parser
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ZooError
from zoo.eval.gallery import GalleryEntry, render_gallery, write_gallery

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
EVIL = '<script>alert("x")</script> & "quotes" \'single\''


def under_ci():
    """True on a CI machine (`CI` set, as GitHub Actions, GitLab and .ci/run do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium():
    """Chromium's path. Missing: the test fails under CI (which must install it: .ci/run
    does), and is skipped on a developer's machine."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium not installed (apt-get install -y chromium chromium-driver)"
    if under_ci():
        pytest.fail(f"{message}; CI must install it (.ci/run does, or fails)")
    pytest.skip(f"{message}; CI installs it")


def run_chromium(tmp_path, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


COLOURS = {"red": (220, 20, 30), "green": (20, 200, 40), "blue": (30, 40, 210),
           "yellow": (230, 220, 20)}


def make_gallery(folder):
    """Images in the folder, in a subfolder and with awkward names; grouped PartiPrompts-style."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub dir").mkdir(exist_ok=True)
    names = {"red": "red #1.png", "green": "sub dir/green.png", "blue": "blue%.png",
             "yellow": "yellow.png"}
    for colour, name in names.items():
        Image.fromarray(np.full((32, 32, 3), COLOURS[colour], np.uint8)).save(folder / name)
    entries = [
        GalleryEntry(prompt=EVIL, images=[names["red"], str(folder / names["green"])],
                     scores=[0.1, 0.9], accepted=[False, True], category="Animals",
                     challenge="Basic", details=["checker: colour <ok>"]),
        GalleryEntry(prompt="a blue thing", images=[names["blue"]], category="Vehicles",
                     challenge="Complex"),
        GalleryEntry(prompt="a yellow thing", images=[names["yellow"]], category="Animals",
                     challenge="Quantity"),
    ]
    return entries, names


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.scripts, self.headings, self.body = [], 0, [], {}
        self._in_heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "body":
            self.body = attrs
        elif tag in ("h2", "h3"):
            self._in_heading = tag

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append((self._in_heading, data))
            self._in_heading = None


def parse(page):
    c = _Collector()
    c.feed(page)
    return c


def test_gallery_renders_in_headless_chromium_with_every_image_loaded(tmp_path):
    entries, names = make_gallery(tmp_path / "written")
    write_gallery(tmp_path / "written", entries, title="test <gallery>", summary="fid: 1.0")
    # Links are relative: the folder still works after moving it.
    folder = tmp_path / "moved"
    shutil.move(tmp_path / "written", folder)
    index = folder / "index.html"

    static = parse(index.read_text(encoding="utf-8"))
    assert len(static.images) == 4
    for src in static.images:
        assert not src.startswith(("/", "file:")), src
        assert (folder / urllib.parse.unquote(src)).is_file(), src

    dom = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", index.as_uri())
    rendered = parse(dom)
    assert rendered.body.get("data-images-total") == "4", rendered.body
    assert rendered.body.get("data-images-loaded") == "4", rendered.body
    assert rendered.body.get("data-images-broken") == "0", rendered.body
    # The hostile prompt stays text: the page's own script is the only script element.
    assert rendered.scripts == 1
    assert "&lt;script&gt;alert" in dom
    # Scores: best first with its rank; checker verdicts shown.
    assert rendered.images[:2] == [urllib.parse.quote("sub dir/green.png"),
                                   urllib.parse.quote("red #1.png")]
    assert "#1 score 0.900" in dom and "#2 score 0.100" in dom
    assert "accepted" in dom and "rejected" in dom
    # Grouped by category (first-seen order), then challenge.
    assert rendered.headings == [("h2", "Animals"), ("h3", "Basic"), ("h3", "Quantity"),
                                 ("h2", "Vehicles"), ("h3", "Complex")]

    # A screenshot is not blank: each sample's colour is on screen.
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, "--virtual-time-budget=10000", "--window-size=1000,1400",
                 f"--screenshot={shot}", index.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for colour, rgb in COLOURS.items():
        hits = np.sum(np.all(np.abs(pixels - rgb) <= 3, axis=1))
        assert hits > 500, f"{colour} sample not visible in the screenshot ({hits} pixels)"


def test_missing_image_is_reported_by_chromium_marker(tmp_path):
    """The marker the test relies on would catch a broken link (so the check above can fail)."""
    folder = tmp_path / "g"
    entries, _ = make_gallery(folder)
    (folder / "index.html").write_text(render_gallery(
        entries + [GalleryEntry("gone", ["gone.png"])], folder), encoding="utf-8")
    dom = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                       (folder / "index.html").as_uri())
    body = parse(dom).body
    assert (body.get("data-images-loaded"), body.get("data-images-broken")) == ("4", "1")


def test_write_gallery_checks_inputs(tmp_path):
    with pytest.raises(ZooError, match=r"gallery image .*nope\.png.*does not exist"):
        write_gallery(tmp_path, [GalleryEntry("p", ["nope.png"])])
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ZooError, match="2 scores for 1 images"):
        write_gallery(tmp_path, [GalleryEntry("p", ["a.png"], scores=[1.0, 2.0])])
    # Ungrouped prompts: no headings, plain list in the given order.
    page = parse(write_gallery(tmp_path, [GalleryEntry("b", ["a.png"]),
                                          GalleryEntry("a", ["a.png"])]).read_text())
    assert page.headings == [] and page.images == ["a.png", "a.png"]


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        chromium()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="CI installs it"):
        chromium()


def test_ci_stops_when_chromium_cannot_be_installed(tmp_path):
    """.ci/run with no Chromium and a failing apt-get exits 1 before the tests run."""
    root = Path(__file__).resolve().parents[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "tail"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package chromium'\n"
                                     "exit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    (bin_dir / "python3").write_text("#!/bin/sh\necho 'must not be reached' >&2\nexit 3\n")
    (bin_dir / "python3").chmod(0o755)
    proc = subprocess.run([str(bin_dir / "bash"), str(root / ".ci" / "run")],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path),
                               "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "could not install chromium" in proc.stderr
    assert "Unable to locate package chromium" in proc.stderr
    assert "must not be reached" not in proc.stderr
