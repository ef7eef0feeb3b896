"""End to end: the registry browser in headless Chromium, over a registry that real tagged
runs produced.

A private daemon runs with `[collector] web_listen` (the embedded registry's web UI); a
two-step pipeline is tagged through roarctl; then the page is driven as a user would: search
a hash prefix, land on the artifact, open its lineage graph, click the node of the consuming
run on the canvas, land on that run, and take a screenshot that must not be blank.

Needs Debian's chromium and chromium-driver (deploy/setup.sh --dev) and the selenium and
pillow packages (the dev extra); nothing is downloaded at test time. Without them these tests
skip, except under ROARD_REQUIRE_BPF=1 (CI), where they fail like every other e2e test.
"""

from __future__ import annotations

import io
import json
import os
import re
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 30.0


def _browser_unavailable() -> str | None:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.is_file():
            return f"{binary} is missing (apt-get install chromium chromium-driver)"
    try:
        import PIL  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through its WebDriver; fails instead of skipping in CI."""
    reason = _browser_unavailable()
    if reason is not None:
        if os.environ.get("ROARD_REQUIRE_BPF") == "1":
            pytest.fail(f"browser tests required (ROARD_REQUIRE_BPF=1) but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def web_roard(
    _bpf_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Roard, str, str]]:
    """A private daemon whose embedded registry serves the web UI; yields it, the URL and
    the access token (from the state dir, as an administrator would read it)."""
    root = tmp_path_factory.mktemp("roard-web")
    daemon = start_roard(root, '[collector]\nweb_listen = "127.0.0.1:0"\n')
    try:
        found = re.search(r'"url": "(http://127\.0\.0\.1:\d+/)"', daemon.log.read_text())
        assert found, f"no web UI URL in the daemon log:\n{daemon.log.read_text()[-3000:]}"
        token_file = root / "state" / "web-token"
        assert token_file.stat().st_mode & 0o077 == 0  # root's only
        yield daemon, found.group(1), token_file.read_text().strip()
    finally:
        stop_roard(daemon)


def b3(path: Path) -> str:
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


def tagged_pipeline(daemon: Roard, workdir: Path) -> dict[str, str]:
    """raw.csv -> prep -> clean.csv -> train -> model.bin, tagged; returns the run ids."""
    (workdir / "raw.csv").write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(50)))
    (workdir / "prep.py").write_text(
        textwrap.dedent("""
        rows = open("raw.csv").read().splitlines()
        with open("clean.csv", "w") as out:
            out.write("\\n".join(r for r in rows if not r.endswith(",0")) + "\\n")
    """)
    )
    (workdir / "train.py").write_text(
        textwrap.dedent("""
        import hashlib
        data = open("clean.csv", "rb").read()
        with open("model.bin", "wb") as out:
            out.write(hashlib.sha256(data).digest() * 64)
    """)
    )
    ids = {}
    for name, script in (("prep", "prep.py"), ("train", "train.py")):
        daemon.roarctl(
            "tag", "--name", name, "--label", f"stage={name}", "--", python3(), script, cwd=workdir
        )
        ids[name] = daemon.show(name)["run_id"]
    return ids


@pytest.fixture(scope="module")
def pipeline(
    web_roard: tuple[Roard, str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """The tagged pipeline's directory and run ids (run once for the module)."""
    workdir = tmp_path_factory.mktemp("pipeline")
    return workdir, tagged_pipeline(web_roard[0], workdir)


def until(check: Callable[[], Any], what: str, driver: Any) -> Any:
    """Polls `check` until it returns something true; fails with the page's state."""
    deadline = time.monotonic() + WAIT
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the page is changing under us: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    main = driver.execute_script("return document.getElementById('main').innerText")
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\nURL {driver.current_url}\n{main}")


def non_blank(png: bytes, where: Path) -> None:
    """A screenshot with real content: many colors, no single color covering nearly all."""
    from PIL import Image

    where.write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    assert width >= 800 and height >= 600, image.size
    colors = image.getcolors(maxcolors=width * height) or []
    commonest = max(count for count, _ in colors)
    assert len(colors) >= 32, f"{where}: only {len(colors)} colors"
    assert commonest < 0.95 * width * height, f"{where}: one color covers nearly everything"


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_search_artifact_graph_and_run_in_a_browser(
    browser: Any,
    web_roard: tuple[Roard, str, str],
    pipeline: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, token = web_roard[1], web_roard[2]
    workdir, ids = pipeline
    clean, model = b3(workdir / "clean.csv"), b3(workdir / "model.bin")
    driver = browser
    text = lambda: driver.find_element(By.ID, "main").text  # noqa: E731

    # The runs page lists both runs.
    driver.get(f"{url}?token={token}")  # sets the session cookie
    until(lambda: "train" in text() and "prep" in text(), "the runs list", driver)

    # Search a prefix of clean.csv's hash: the artifact page, producer and consumer.
    box = driver.find_element(By.ID, "search-q")
    box.send_keys(clean.removeprefix("blake3:")[:10], Keys.ENTER)
    until(lambda: driver.current_url.split("#", 1)[1].startswith("/artifact/"), "artifact", driver)
    until(lambda: clean in text(), "the artifact's hash", driver)
    produced = driver.find_element(By.XPATH, "//h3[starts-with(., 'Produced by')]/following::table")
    consumed = driver.find_element(By.XPATH, "//h3[starts-with(., 'Consumed by')]/following::table")
    assert "prep" in produced.text and ids["prep"] in produced.text
    assert "train" in consumed.text and ids["train"] in consumed.text
    assert str(workdir / "clean.csv") in text()

    # Its lineage graph: runs and artifacts drawn, the accessible list beside it.
    driver.find_element(By.ID, "open-lineage").click()
    until(lambda: driver.find_elements(By.CSS_SELECTOR, "#graph[data-ready]"), "graph", driver)
    nodes = driver.execute_script(
        "return window.roardGraph.nodes().map(n => [n.id(), n.classes().join(' ')])"
    )
    kinds = dict(nodes)
    assert "run" in kinds[f"run:{ids['prep']}"] and "run" in kinds[f"run:{ids['train']}"]
    assert "artifact" in kinds[f"artifact:{clean}"] and "root" in kinds[f"artifact:{clean}"]
    assert "artifact" in kinds[f"artifact:{model}"]
    shapes = driver.execute_script(
        "const run = window.roardGraph.$('node.run').first();"
        "const artifact = window.roardGraph.$('node.artifact').first();"
        "return [run.style('shape'), artifact.style('shape'),"
        " run.style('background-color'), artifact.style('background-color')]"
    )
    assert shapes[0] != shapes[1] and shapes[2] != shapes[3]  # runs and artifacts differ
    side = driver.find_element(By.ID, "graph-nodes").text
    assert "prep" in side and "train" in side and "model.bin" in side
    non_blank(driver.get_screenshot_as_png(), tmp_path / "graph.png")

    # Click the node of run "train" where cytoscape drew it: its run page.
    canvas = driver.find_element(By.ID, "graph")
    x, y = driver.execute_script(
        "const p = window.roardGraph.getElementById(arguments[0]).renderedPosition();"
        "return [p.x, p.y]",
        f"run:{ids['train']}",
    )
    size = canvas.size
    assert 0 < x < size["width"] and 0 < y < size["height"], (x, y, size)
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)
    ).click().perform()
    until(lambda: driver.current_url.endswith(f"#/run/{ids['train']}"), "the run page", driver)
    until(lambda: model in text(), "model.bin's hash on the run page", driver)
    page = text()
    assert str(workdir / "model.bin") in page and str(workdir / "clean.csv") in page
    assert "train.py" in page  # the process tree's command line
    assert "complete" in page
    tree = driver.find_element(By.ID, "process-tree").text
    assert f"{python3()} train.py" in tree or "python3 train.py" in tree

    shot = tmp_path / "run.png"
    non_blank(driver.get_screenshot_as_png(), shot)
    assert not console_errors(driver), console_errors(driver)


def test_run_search_and_api_over_the_daemon_registry(
    browser: Any, web_roard: tuple[Roard, str, str], pipeline: tuple[Path, dict[str, str]]
) -> None:
    """The runs search filters by label; the JSON API answers what roarctl does."""
    import urllib.error
    import urllib.request

    from selenium.webdriver.common.by import By

    url, token = web_roard[1], web_roard[2]
    ids = pipeline[1]
    driver = browser
    driver.get(f"{url}?token={token}#/runs?label=stage%3Dtrain")
    until(
        lambda: (
            "train" in driver.find_element(By.ID, "main").text
            and "prep" not in driver.find_element(By.CSS_SELECTOR, "#main table").text
        ),
        "runs filtered by label",
        driver,
    )

    def api(path: str) -> Any:
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    runs = api("api/runs?name=train")
    with pytest.raises(urllib.error.HTTPError) as refused:  # other local users have no token
        urllib.request.urlopen(url + "api/runs", timeout=10)
    assert refused.value.code == 401
    assert [r["run_id"] for r in runs] == [ids["train"]]
    graph = api(f"api/graph/{ids['prep']}")
    assert {r["run_id"] for r in graph["runs"]} == set(ids.values())
