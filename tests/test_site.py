"""The course's website, built with ``mkdocs build --strict`` in English and in Chinese (its language switch links
the two) and read in a real headless Chromium (Playwright).

Every page of both loads without a console error or a failed request, every picture on it has loaded, every link
inside the sites leads to a page that exists, notebook 01's equations are typeset, the search finds notebook 01,
each notebook page's Colab link opens that notebook, and the language switch leads from one home page to the other.
Needs the docs extra (``pip install -e ".[docs]"``) and Debian's ``chromium``; without them the tests are skipped
with what to install, except where VIT_COURSE_REQUIRE_SITE is set (``.ci/run`` sets it), where they fail.
"""
from __future__ import annotations

import functools
import json
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import pytest

from tools import publish, translate

ROOT = Path(__file__).resolve().parent.parent
DOCS_PACKAGES = ("mkdocs", "material", "mkdocs_jupyter", "mkdocstrings", "latex2mathml", "playwright")
EDITION_CONFIG = f"mkdocs.{translate.EDITION}.yml"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str | None:
    """The Chromium to drive: VIT_COURSE_CHROMIUM, else Debian's or Ubuntu's on the PATH."""
    return os.environ.get("VIT_COURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _require_site_tools() -> None:
    missing = [f'the docs extra (pip install -e ".[docs]"; {name} is missing)'
               for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None][:1]
    if chromium_path() is None:
        missing.append("a Chromium (sudo apt-get install chromium, or VIT_COURSE_CHROMIUM=/path/to/chrome)")
    if missing:
        message = "The website test needs " + " and ".join(missing) + "."
        if os.environ.get("VIT_COURSE_REQUIRE_SITE"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def site():
    """(its address on localhost, its folder): the site built from this checkout into a temporary folder."""
    _require_site_tools()
    with tempfile.TemporaryDirectory(prefix="vit-site-") as site_dir:
        for config, folder in (("mkdocs.yml", site_dir), (EDITION_CONFIG, f"{site_dir}/{translate.EDITION}")):
            build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config,
                                    "--site-dir", folder], cwd=ROOT, capture_output=True, text=True,
                                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
            assert build.returncode == 0, f"mkdocs build --strict -f {config} failed:\n{build.stderr[-4000:]}"
        handler = functools.partial(_QuietHandler, directory=site_dir)
        server = _QuietServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}/", Path(site_dir)
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a browser that closes a connection early is not the site's fault


@pytest.fixture(scope="module")
def site_url(site) -> str:
    return site[0]


@pytest.fixture(scope="module")
def browser(site_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(site) -> list[str]:
    """The address of every page of the site."""
    site_url, site_dir = site
    return sorted(urllib.parse.urljoin(site_url, index.parent.relative_to(site_dir).as_posix() + "/")
                  for index in site_dir.rglob("index.html"))


def _open(browser, url: str):
    """A new page at ``url``, loaded, with the console errors and failed requests it produced."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.ok, f"{url} answered {response and response.status}"
    return page, problems


def test_every_page_loads_its_pictures_and_links(browser, pages, site_url):
    assert len(pages) > 60, f"the two sites have only {len(pages)} pages"
    checked: dict[str, bool] = {}
    for url in pages:
        page, problems = _open(browser, url)
        broken_images = page.evaluate(
            "Array.from(document.images).filter(image => !(image.complete && image.naturalWidth > 0))"
            ".map(image => image.src)")
        links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(link => link.href)")
        page.close()
        assert not problems, f"{url}: {problems}"
        assert not broken_images, f"{url}: pictures that did not load: {broken_images}"
        for link in {link.split("#")[0] for link in links if link.startswith(site_url)}:
            if link not in checked:
                try:
                    checked[link] = urllib.request.urlopen(link).status == 200
                except urllib.error.HTTPError:
                    checked[link] = False
            assert checked[link], f"{url} links to {link}, which is not on the site"


def notebook_url(site_url: str, notebook: str) -> str:
    return urllib.parse.urljoin(site_url, f"notebooks/{notebook}/")


def test_equation_1_is_typeset(browser, site_url):
    page, problems = _open(browser, notebook_url(site_url, "01_equation_1_patch_embedding"))
    prose = page.evaluate("Array.from(document.querySelectorAll('.jp-MarkdownOutput')).map(cell => cell.innerText)"
                          ".join('\\n')")
    typeset = page.evaluate("document.querySelectorAll('.jp-MarkdownOutput math').length")
    page.close()
    assert not problems
    assert "Equation 1" in prose or "equation 1" in prose
    assert typeset > 10
    untypeset = re.findall(r"\$[^$\n]{1,80}\$", prose)
    assert not untypeset, f"maths left as TeX: {untypeset[:5]}"


def test_search_finds_the_patch_embedding_notebook(browser, site_url):
    page, problems = _open(browser, site_url)
    page.click("input.md-search__input")
    # The theme builds its index in a web worker; a query typed before it is ready finds nothing.
    page.wait_for_function("!document.querySelector('.md-search-result__meta').innerText.includes('Initializing')",
                           timeout=60_000)
    page.keyboard.type("patch embedding")
    page.wait_for_selector(".md-search-result__item a", timeout=30_000)
    results = page.evaluate("Array.from(document.querySelectorAll('.md-search-result__item a')).map(a => a.href)")
    page.close()
    assert not problems
    assert any("notebooks/01_equation_1_patch_embedding/" in result for result in results), results


def test_each_notebook_page_opens_its_notebook_in_colab(browser, site_url):
    repository = publish.read_repository(ROOT)
    for path in publish.notebook_paths(ROOT):
        relative = PurePosixPath(path.relative_to(ROOT).as_posix())
        site = f"{translate.EDITION}/" if translate.EDITION in relative.parts else ""  # the edition's own site
        page, problems = _open(browser, urllib.parse.urljoin(site_url, site + str(relative.with_suffix("")) + "/"))
        colab = page.evaluate("Array.from(document.querySelectorAll('a[href*=\"colab.research.google.com\"]'))"
                              ".map(a => a.href)")
        page.close()
        assert not problems
        assert colab and set(colab) == {publish.colab_url(repository, relative)}, (relative, colab)


def test_the_language_switch_leads_from_each_home_page_to_the_other(browser, site_url):
    for start, language, title in ((site_url, "zh", "用 PyTorch 复现"), (f"{site_url}{translate.EDITION}/", "en",
                                                                      "Replicating the Vision Transformer")):
        page, problems = _open(browser, start)
        target = page.evaluate(f"document.querySelector('a.md-select__link[hreflang=\"{language}\"]').href")
        page.close()
        other, other_problems = _open(browser, target)
        heading = other.evaluate("document.querySelector('h1').innerText")
        other.close()
        assert not problems and not other_problems
        assert title in heading, (start, target, heading)


def test_screenshots(browser, site_url, capsys):
    folder = Path(tempfile.mkdtemp(prefix="vit-site-screenshots-"))
    for name, url in (("home", site_url), ("notebook_01", notebook_url(site_url, "01_equation_1_patch_embedding"))):
        page, problems = _open(browser, url)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=folder / f"{name}.png")
        page.close()
        assert not problems
        assert (folder / f"{name}.png").stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nScreenshots of the website: {folder}")


# Each edition's search: a term a reader types -> the notebook that teaches it, to be among the first five pages.
# The Chinese edition's list has terms of both languages, and a common variant (位置嵌入 for 位置编码).
SEARCH_TERMS = {
    "": {"patch embedding": "01_equation_1", "multi-head self-attention": "02_equation_2", "LayerNorm": "02_equation_2",
         "softmax": "02_equation_2", "GELU": "03_equation_3", "MLP block": "03_equation_3",
         "Transformer encoder": "04_equation_4", "fast path": "04b_optional", "inductive bias": "05_training",
         "hybrid": "05b_a_vit", "feature extractor": "06_pretrained", "Figure 7": "07_predictions",
         "quantization": "08_foodvision", "ONNX": "08_foodvision"},
    f"{translate.EDITION}/": {"图像块嵌入": "01_equation_1", "位置编码": "01_equation_1", "位置嵌入": "01_equation_1",
                             "patch embedding": "01_equation_1", "多头自注意力": "02_equation_2",
                             "自注意力": "02_equation_2", "层归一化": "02_equation_2", "LayerNorm": "02_equation_2",
                             "GELU": "03_equation_3", "混合": "05b_a_vit", "特征提取器": "06_pretrained",
                             "微调": "06_pretrained", "注意力展开": "07_predictions"},
}


def _first_results(browser, url: str, query: str, count: int = 5) -> list[str]:
    """The first ``count`` pages the site's search lists for ``query``."""
    page, problems = _open(browser, url)
    page.click("input.md-search__input")
    page.wait_for_function("!document.querySelector('.md-search-result__meta').innerText.includes('Initializing')",
                           timeout=60_000)
    page.keyboard.type(query)
    page.keyboard.press("End")  # the theme searches on a key's release, which typed Chinese characters lack
    page.wait_for_selector(".md-search-result__item a", timeout=30_000)
    results = page.evaluate("Array.from(document.querySelectorAll('li.md-search-result__item > a'))"
                            ".map(a => a.href.split(/[?#]/)[0])")
    page.close()
    assert not problems
    return list(dict.fromkeys(results))[:count]  # a page's sections are listed under it: count each page once


@pytest.mark.parametrize("edition", list(SEARCH_TERMS), ids=lambda edition: edition.strip("/") or "en")
def test_search_finds_the_notebook_that_teaches_each_term(browser, site_url, edition):
    missed = {}
    for query, notebook in SEARCH_TERMS[edition].items():
        results = _first_results(browser, site_url + edition, query)
        if not any(f"notebooks/{edition}{notebook}" in result for result in results):
            missed[query] = results
    assert not missed, f"not among the first five results: {missed}"


def _notebook_pages(pages: list[str], site_url: str) -> list[str]:
    return [url for url in pages if url.removeprefix(site_url).removeprefix(f"{translate.EDITION}/").startswith(
        "notebooks/")]


def test_notebook_pages_show_no_tag_chips_and_offer_their_notebook(browser, pages, site_url):
    notebook_pages = _notebook_pages(pages, site_url)
    assert len(notebook_pages) == 2 * len(translate.english_notebooks(ROOT))
    for url in notebook_pages:
        page, problems = _open(browser, url)
        text = page.evaluate("document.querySelector('article').innerText")
        download = page.evaluate("(document.querySelector('a.notebook-download') || {}).href || null")
        page.close()
        assert not problems and "nbval-" not in text, url
        assert download and download.endswith(".ipynb"), url
        with urllib.request.urlopen(download) as response:
            assert response.status == 200 and "cells" in json.loads(response.read()), download


@pytest.mark.parametrize("notebook, number", [("01_equation_1_patch_embedding", "(1)"), ("02_equation_2_msa", "(2)")])
def test_an_equations_number_stands_at_the_right_apart_from_the_formula(browser, site_url, notebook, number):
    page, problems = _open(browser, notebook_url(site_url, notebook))
    boxes = page.evaluate("""number => {
        const label = Array.from(document.querySelectorAll('.equation-number')).find(span => span.innerText === number);
        const box = element => {
            const r = element.getBoundingClientRect();
            return [r.left, r.right, r.top, r.bottom];
        };
        return label && {number: box(label), formula: box(label.parentElement.querySelector('math')),
                         equation: box(label.parentElement)};
    }""", number)
    page.close()
    assert not problems and boxes, f"no equation numbered {number}"
    assert boxes["formula"][1] <= boxes["number"][0], boxes  # the formula ends before its number begins
    assert abs(boxes["number"][1] - boxes["equation"][1]) < 2, boxes  # the number sits at the right margin


# The Explore page (docs/explore.md, docs/assets/explore.js): notebook 08's model in the browser, checked against
# the course's PyTorch model, offline (a request to any other host fails the test).
EDITIONS = ["", f"{translate.EDITION}/"]


@pytest.fixture(scope="module")
def foodvision():
    """Notebook 08's model, its transform and class names, rebuilt as tools/explore.py built the page's (seed 42)."""
    from going_modular import data_setup
    from going_modular.deploy import export

    return export.foodvision_mini(data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi"))


def _explorer(browser, url: str):
    """The Explore page at ``url`` once its model has predicted its first photo, with the console errors and
    script errors it produced and the requests it made to other hosts (refused)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    local = urllib.parse.urlsplit(url).netloc

    def only_local(route) -> None:
        if urllib.parse.urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            problems.append(f"request to another host: {route.request.url}")
            route.abort()
    page.route("**/*", only_local)
    page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.goto(url)
    page.wait_for_function("window.explorer.ready === true", timeout=120_000)
    return page, problems


def _pytorch_attention(model, images):
    import torch

    with torch.inference_mode():
        logits, attention = model(images, return_attention=True)
    return logits.softmax(dim=-1)[0], attention


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda edition: edition.strip("/") or "en")
def test_the_explore_page_predicts_an_uploaded_photo_as_pytorch_does(browser, site_url, foodvision, edition, capsys):
    import time

    from going_modular import data_setup
    from going_modular.common import settings

    model, transform, class_names = foodvision
    photo = settings.get_data_dir() / "04-pizza-dad.jpeg"
    page, problems = _explorer(browser, f"{site_url}{edition}explore/")
    start = time.perf_counter()
    page.set_input_files("#upload", str(photo))
    page.wait_for_function(f"window.explorer.photo === {json.dumps(photo.name)}", polling=10, timeout=30_000)
    seconds = time.perf_counter() - start
    shown, probabilities = page.inner_text("#prediction"), page.evaluate("window.explorer.probabilities")
    page_input = page.evaluate("Array.from(window.explorer.input)")
    in_page = page.evaluate("window.explorer.milliseconds")
    page.close()
    assert not problems
    expected, _ = _pytorch_attention(model, transform(data_setup.load_image(photo)).unsqueeze(0))
    assert shown.startswith("pizza"), shown
    for name, probability in zip(class_names, expected.tolist()):
        assert abs(probabilities[name] - probability) < 0.01, (name, probabilities[name], probability)
    course_input = transform(data_setup.load_image(photo)).flatten().tolist()
    assert max(abs(a - b) for a, b in zip(page_input, course_input)) < 1e-6  # the browser's decoding is Pillow's
    with capsys.disabled():
        print(f"\nExplore page ({edition or 'en'}): upload to prediction {seconds:.2f} s, of which the page's own "
              f"work (decode, preprocess, model) {in_page:.0f} ms")


def test_the_explore_page_preprocesses_as_the_course_does(browser, site_url, foodvision):
    """Photos of odd sizes, both orientations: the page's Resize, CenterCrop and Normalize against torchvision's."""
    import numpy as np
    from PIL import Image

    _, transform, _ = foodvision
    page, problems = _explorer(browser, f"{site_url}explore/")
    config = page.evaluate("fetch('foodvision.json').then(response => response.json())")
    for height, width in ((301, 257), (250, 555), (1000, 999)):
        pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        rgba = np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
        in_page = page.evaluate("([rgba, width, height, config]) => Array.from(window.explorer.preprocess("
                                "Uint8ClampedArray.from(rgba), width, height, config).input)",
                                [rgba.flatten().tolist(), width, height, config])
        expected = transform(Image.fromarray(pixels)).flatten().numpy()
        assert np.abs(np.asarray(in_page) - expected).max() < 1e-6, (height, width)
    page.close()
    assert not problems


def test_the_explore_page_draws_what_the_course_computes(browser, site_url, foodvision):
    """Clicks and controls change the picture; the numbers drawn are the course's attention, rollout and
    position-embedding similarity for that patch, layer and head."""
    import torch

    from going_modular.figures import attention, figure7

    model = foodvision[0]
    page, problems = _explorer(browser, f"{site_url}explore/")
    grid = model.grid_size[0]
    cell = page.evaluate("document.querySelector('#attention').clientWidth") / grid

    def picture() -> str:
        return page.evaluate("document.querySelector('#attention').toDataURL()")

    def click(row: int, column: int) -> dict:
        page.click("#attention", position={"x": (column + 0.5) * cell, "y": (row + 0.5) * cell})
        return page.evaluate("window.explorer.drawn")

    pictures = [picture()]
    for action in (lambda: click(3, 4), lambda: click(10, 2), lambda: page.select_option("#layer", "5"),
                   lambda: page.select_option("#head", "2")):
        action()
        pictures.append(picture())
    assert len(set(pictures)) == len(pictures), "a click or a control left the picture as it was"
    drawn = page.evaluate("window.explorer.drawn")
    images = torch.tensor(page.evaluate("Array.from(window.explorer.input)")).reshape(1, 3, 224, 224)
    _, attentions = _pytorch_attention(model, images)
    patch = 10 * grid + 2
    assert (drawn["layer"], drawn["head"], drawn["patch"]) == (5, 2, patch)
    expected = attentions[4][0, 1, 1 + patch, 1:]
    assert (torch.tensor(drawn["values"]) - expected).abs().max() < 1e-3
    page.select_option("#view", "rollout")
    rollout = attention.attention_rollout(attentions[:5])[0, 1 + patch, 1:]
    assert (torch.tensor(page.evaluate("window.explorer.drawn.values")) - rollout).abs().max() < 1e-3
    page.select_option("#view", "distance")
    distances = torch.tensor(page.evaluate("window.explorer.drawn.values"))  # each patch's, in pixels
    assert abs(distances.mean() - attention.mean_attention_distance(attentions[4], grid, model.patch_size)[1]) < 0.01
    similarity = page.evaluate("fetch('explore.json').then(response => response.json())")["position_similarity"]
    expected = figure7.position_embedding_similarity(model).flatten(2).flatten(0, 1)[patch]
    assert (torch.tensor(similarity[patch]) - expected).abs().max() < 1e-4
    page.close()
    assert not problems


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda edition: edition.strip("/") or "en")
def test_the_home_page_and_notebooks_02_and_07_lead_to_the_explore_page(browser, site_url, edition):
    for path in ("", f"notebooks/{edition}02_equation_2_msa/", f"notebooks/{edition}07_predictions_and_attention/"):
        page, problems = _open(browser, f"{site_url}{edition}{path}")
        links = page.evaluate("Array.from(document.querySelectorAll('article a[href]')).map(a => a.href)")
        page.close()
        assert not problems
        assert f"{site_url}{edition}explore/" in links, path


def test_the_explore_page_says_what_to_do_with_a_file_that_is_not_a_photo(browser, site_url, tmp_path):
    page, problems = _explorer(browser, f"{site_url}explore/")
    (tmp_path / "notes.jpg").write_text("not a photo")
    page.set_input_files("#upload", str(tmp_path / "notes.jpg"))
    page.wait_for_function("document.querySelector('#prediction').innerText.includes('notes.jpg')", timeout=30_000)
    message = page.inner_text("#prediction")
    page.close()
    assert not problems
    assert "choose a JPEG, PNG or WebP" in message
