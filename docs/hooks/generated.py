"""MkDocs hook: the parts of the docs that the code knows, generated at every build.

- ``<!-- settings-table -->`` becomes the table of every setting
  (:func:`pipeline.config.settings.markdown_table`, the same text as
  ``python -m pipeline.config.settings
  --markdown``), so the configuration page cannot fall behind the settings class.
- ``<!-- api-endpoints -->`` becomes the table of the operator API's endpoints, read from the
  OpenAPI document the API serves (FastAPI's ``app.openapi()``: no server, no broker, no
  store is started). The whole document is published next to the pages as ``openapi.json``.
- Links from a page to a file of the repository outside ``docs/`` (``../bench/README.md``,
  ``../schemas/json/chat_control.json``) work on GitHub as they are; for the site, the file
  is copied under ``repo/`` and the link pointed at the copy (a folder's link at its
  ``README.md``, or at a generated list of its files). A link to a file that does not exist
  is a warning, so ``mkdocs build --strict`` fails on it as on any other broken link.

``openapi.json`` and the copies are added as generated files in ``on_files`` (not written in
``on_post_build``), so that MkDocs checks the links to them and ``mkdocs serve`` serves them.

Nothing here fetches anything: the build runs offline.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

SETTINGS_MARKER = "<!-- settings-table -->"
ENDPOINTS_MARKER = "<!-- api-endpoints -->"
OPENAPI_FILE = "openapi.json"
#: Where the repository's files outside docs/ appear in the site.
REPO_DIR = "repo"

# Under "mkdocs.", so that --strict counts this hook's warnings as its own.
log = logging.getLogger("mkdocs.hooks.generated")

#: A Markdown link or image whose target leaves the docs folder: ](../path#anchor)
OUTSIDE_LINK = re.compile(r"\]\((?P<target>\.\./[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")

_openapi: dict[str, Any] | None = None
#: Page (src_uri) -> {link as written -> path of the copy in the site (posix, from docs/)}
_outside: dict[str, dict[str, str]] = {}


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    # The project's packages, also when mkdocs runs from a venv without the editable install.
    root = str(_repo_root(config))
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


# --- the settings table -----------------------------------------------------------------------


def _escape_html(cell: str) -> str:
    """``<name>`` outside code spans would be taken for an HTML tag and vanish."""
    parts = cell.split("`")
    return "`".join(p.replace("<", "&lt;") if i % 2 == 0 else p for i, p in enumerate(parts))


def settings_table() -> str:
    """Every setting: variable, default, meaning (``pipeline.config.settings.markdown_table``)."""
    from pipeline.config.settings import markdown_table

    rows = markdown_table().splitlines()
    # An empty default is an empty code span, which Markdown shows as two backticks.
    return "\n".join(_escape_html(row.replace("| `` |", "| *(empty)* |")) for row in rows)


# --- the operator API -------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of ``faust -A pipeline api``, built from the app itself.

    The app is made on default settings with a data folder of its own (so no token file is
    written anywhere) and without its background work; ``openapi()`` needs no server.
    """
    global _openapi
    if _openapi is None:
        from pipeline.api.app import create_api
        from pipeline.config.settings import Settings

        with tempfile.TemporaryDirectory(prefix="wabot-docs-") as data_dir:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=Path(data_dir),
                database_url="",
                api_tokens={"docs": "built-for-the-docs-only-never-served"},
            )
            _openapi = create_api(settings, background=False).openapi()
    return _openapi


def _first_paragraph(text: str | None) -> str:
    if not text:
        return ""
    paragraph = text.strip().split("\n\n", 1)[0]
    one_line = " ".join(paragraph.split())
    return _escape_html(one_line.replace("``", "`")).replace("|", "\\|")


def endpoints_table(document: dict[str, Any]) -> str:
    """One row per operation: method, path, summary and the first paragraph of its text."""
    rows = ["| method | path | summary | what it does |", "|---|---|---|---|"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f"| `{method.upper()}` | `{path}` | {operation.get('summary', '')} "
                f"| {_first_paragraph(operation.get('description'))} |"
            )
    return "\n".join(rows)


def render(markdown: str) -> str:
    """``markdown`` with its markers replaced (only what a page asks for is built)."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    if ENDPOINTS_MARKER in markdown:
        markdown = markdown.replace(ENDPOINTS_MARKER, endpoints_table(openapi_document()))
    return markdown


# --- files of the repository outside docs/ ----------------------------------------------------


def _copy_uri(path: Path, root: Path) -> str:
    return posixpath.join(REPO_DIR, path.relative_to(root).as_posix())


def _folder_listing(folder: Path, root: Path) -> str:
    """The page for a folder without a README: its files, each a link to its copy."""
    lines = [f"# `{folder.relative_to(root).as_posix()}/`", ""]
    lines += [f"- [`{f.name}`]({f.name})" for f in sorted(folder.iterdir()) if f.is_file()]
    return "\n".join(lines) + "\n"


def _outside_links(
    markdown: str, page_uri: str, docs_dir: Path, root: Path
) -> tuple[dict[str, str], dict[str, Path | str]]:
    """The links of a page that leave docs/: (link -> the copy's path in the site,
    the copy's path -> the file to copy, or the text of a folder's listing)."""
    links: dict[str, str] = {}
    copies: dict[str, Path | str] = {}
    page_dir = (docs_dir / page_uri).parent
    for match in OUTSIDE_LINK.finditer(markdown):
        link = match["target"]
        target = (page_dir / link).resolve()
        if target.is_relative_to(docs_dir) or not target.is_relative_to(root):
            continue  # inside docs/ (MkDocs checks it) or outside the repository (not ours)
        if target.is_dir() and (target / "README.md").is_file():
            target = target / "README.md"
        elif target.is_dir():
            listing = _copy_uri(target / "index.md", root)
            copies[listing] = _folder_listing(target, root)
            copies.update({_copy_uri(f, root): f for f in target.iterdir() if f.is_file()})
            links[link] = listing
            continue
        if not target.is_file():
            log.warning("Doc file '%s' links to '%s', which does not exist", page_uri, link)
            continue
        links[link] = _copy_uri(target, root)
        copies[links[link]] = target
    return links, copies


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _repo_root(config)
    docs_dir = Path(config.docs_dir).resolve()
    _outside.clear()
    copies: dict[str, Path | str] = {}
    for page in files.documentation_pages():
        if page.abs_src_path is None or page.src_uri.startswith(f"{REPO_DIR}/"):
            continue
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        _outside[page.src_uri], found = _outside_links(text, page.src_uri, docs_dir, root)
        copies.update(found)
    for copy, source in sorted(copies.items()):
        if files.get_file_from_path(copy) is not None:
            continue
        if isinstance(source, str):
            files.append(File.generated(config, copy, content=source))
        else:
            files.append(File.generated(config, copy, abs_src_path=str(source)))
    document = json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
    files.append(File.generated(config, OPENAPI_FILE, content=document))
    return files


def _point_at_copies(markdown: str, page_uri: str) -> str:
    links = _outside.get(page_uri, {})
    page_dir = posixpath.dirname(page_uri)

    def replace(match: re.Match[str]) -> str:
        copy = links.get(match["target"])
        if copy is None:
            return match[0]
        relative = posixpath.relpath(copy, page_dir or ".")
        return f"]({relative}{match['anchor'] or ''})"

    return OUTSIDE_LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return render(_point_at_copies(markdown, page.file.src_uri))
