"""mkdocs hooks that build the website from the repository's own files: README.md as home page (an edition's, with
``extra.edition``, its own README and notebooks), the notebooks, the results, docs/'s guides and API. Links written
for GitHub lead to the page they name, or to the file on GitHub. Nothing loads from other servers: the Colab badge is
local, and the notebooks' TeX becomes MathML (``latex2mathml``), which browsers draw themselves."""
from __future__ import annotations

import html
import posixpath
import re
import shutil
import sys
from pathlib import Path

from latex2mathml.converter import convert as tex_to_mathml
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # mkdocs loads a hook by its path, without the checkout on sys.path
from tools import translate  # noqa: E402
from tools.publish import BRANCH, COLAB_BADGE, MARKDOWN_LINK, is_relative  # noqa: E402

RESULTS = "benchmarks/README.md"
LOCAL_BADGE = "docs/assets/colab-badge.svg"  # the badge's copy in the repository, which the site links instead
# mkdocs-jupyter always adds a MathJax script; mkdocs.yml gives it this address, and on_post_page removes it.
NO_MATHJAX = re.compile(r'<script src="NO_MATHJAX">\s*</script>')

_TAG = re.compile(r"\\tag\{([^}]*)\}")
# mkdocs-jupyter's toolbar of a cell's tags, a chip a tag: <div class="celltoolbar">...</div>.
_TAG_CHIPS = re.compile(r'<div class="celltoolbar">\s*<div class="button_container tags_button_container">\s*'
                        r'<span class="tag-container">(?:\s*<span class="cell-tag">[^<]*</span>)*\s*</span>\s*'
                        r'</div>\s*</div>')
_HTML_LINK = re.compile(r"""((?:href|src)=")([^"]+)(")""")
# In a page's HTML: a block whose text is not prose, or a tag (both kept), or TeX between $$ or $ (converted).
_PROSE_MATH = re.compile(r"(<(pre|code|script|style|title|textarea)\b.*?</\2>|<[^>]*>)|\$\$(.+?)\$\$|\$([^$<>\n]+?)\$",
                         re.DOTALL | re.IGNORECASE)

# Repository path -> its File on the site; filled by on_nav for each build.
_site_files: dict[str, File] = {}


def repository_path(file: File) -> str:
    """Where ``file`` lives in the repository (docs/ files under docs/, the others where the hook found them)."""
    return Path(file.abs_src_path).resolve().relative_to(ROOT).as_posix()


@event_priority(100)  # before the search plugin reads its settings
def on_config(config):
    """The Chinese edition searches in Chinese: its text cut into words by jieba (the docs extra installs it)."""
    if config.extra.get("edition") == translate.EDITION:
        config.plugins["material/search"].config.lang = ["zh"]
    return config


@event_priority(100)  # before mkdocs-jupyter, which must see the notebooks added here
def on_files(files: Files, config) -> Files:
    """Add the repository's own pages (the edition's README as index.md, its notebooks and results) and figures; an
    edition's own pages (``*.zh-CN.md``: the Explore page, the guides) take the English ones' places."""
    edition = config.extra.get("edition")
    home = "README.md" if edition is None else f"README.{edition}.md"
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / home)))
    results = ROOT / RESULTS if edition is None else translate.edition_path(ROOT, ROOT / RESULTS)
    files.append(File.generated(config, RESULTS, abs_src_path=str(results)))
    notebooks = [notebook if edition is None else translate.edition_path(ROOT, notebook)
                 for notebook in translate.english_notebooks(ROOT)]
    for path in [*notebooks, *sorted(ROOT.glob("images/*.png"))]:
        # A File read from the repository's root (mkdocs-jupyter's notebook pages need one, not a generated one).
        files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), config.site_dir, config.use_directory_urls))
    for own in [file for file in files if edition is not None and file.src_uri.endswith(f".{edition}.md")]:
        english = own.src_uri.replace(f".{edition}.md", ".md")  # the edition's page at the English one's address
        files.remove(own)
        files.remove(files.get_file_from_path(english))
        files.append(File.generated(config, english, abs_src_path=own.abs_src_path))
    return files


def on_nav(nav, config, files: Files):
    """Note where each repository file is on the site (once every plugin has placed the files)."""
    _site_files.clear()
    _site_files.update({repository_path(file): file for file in files
                        if file.abs_src_path and Path(file.abs_src_path).resolve().is_relative_to(ROOT)})
    return nav


def site_link(target: str, page: File, repo_url: str, as_url: bool) -> str:
    """``target``, a link written relative to ``page``'s repository file, as a link that works on the site: to the
    page or figure it names (a page's source path for Markdown, its URL for HTML), or to the file on GitHub."""
    path, hash_mark, anchor = target.partition("#")
    suffix = hash_mark + anchor
    if target == COLAB_BADGE:
        repository_target = LOCAL_BADGE
    elif is_relative(target) and path:
        repository_target = posixpath.normpath(posixpath.join(posixpath.dirname(repository_path(page)), path))
    else:
        return target
    if repository_target in _site_files:
        linked = _site_files[repository_target]
        if as_url:
            return linked.url_relative_to(page) + suffix
        return posixpath.relpath(linked.src_uri, posixpath.dirname(page.src_uri) or ".") + suffix
    if (ROOT / repository_target).exists():
        kind = "tree" if (ROOT / repository_target).is_dir() else "blob"
        return f"{repo_url.rstrip('/')}/{kind}/{BRANCH}/{repository_target}{suffix}"
    return target  # left as written: mkdocs reports it (a failure under --strict)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Rewrite a Markdown page's links (README.md and the guides are written for GitHub)."""
    return MARKDOWN_LINK.sub(
        lambda match: match[1] + site_link(match[2], page.file, config.repo_url, as_url=False) + match[3], markdown)


def on_page_content(content: str, page, config, files) -> str:
    """Rewrite a notebook page's links, which mkdocs-jupyter leaves as the notebook has them."""
    if not page.file.src_uri.endswith(".ipynb"):
        return content
    return _HTML_LINK.sub(
        lambda match: match[1] + site_link(match[2], page.file, config.repo_url, as_url=True) + match[3], content)


def typeset(page_html: str) -> str:
    """``page_html`` with the TeX of its prose ($...$ inline, $$...$$ displayed) as MathML; code left as it is. A
    displayed equation's ``\\tag{n}`` becomes its number at the right margin (``.equation-numbered``, extra.css)."""
    def replace(match: re.Match) -> str:
        if match[1]:
            return match[1]
        if match[3] is None:
            return tex_to_mathml(html.unescape(match[4]), display="inline")
        tex = html.unescape(match[3])
        formula, tag = tex_to_mathml(_TAG.sub("", tex), display="block"), _TAG.search(tex)
        return formula if tag is None else (
            f'<div class="equation-numbered">{formula}<span class="equation-number">({tag[1]})</span></div>')

    return _PROSE_MATH.sub(replace, page_html)


def on_post_page(output: str, page, config) -> str:
    """A notebook page's equations as MathML, no MathJax, and no chips of the cells' tags (nbval's, for no reader)."""
    if not page.file.src_uri.endswith(".ipynb"):
        return output
    return typeset(_TAG_CHIPS.sub("", NO_MATHJAX.sub("", output)))


def on_post_build(config) -> None:
    """The Explore page's model, photos and ONNX Runtime Web (tools/explore.py): built with the English site, copied
    from it into an edition's (built after it, into its folder), or built when it is not there."""
    from mkdocs.exceptions import PluginError

    from tools import explore

    folder, english = Path(config.site_dir) / "explore", Path(config.site_dir).parent / "explore"
    if config.extra.get("edition") is not None and (english / "foodvision.onnx").exists():
        shutil.copytree(english, folder, ignore=shutil.ignore_patterns("index.html"), dirs_exist_ok=True)
        return
    try:
        explore.build(folder)
    except Exception as error:  # the one line a reader needs (npm ci, the data, the weights), not a traceback
        raise PluginError(f"The Explore page's files could not be built: {error}") from error
