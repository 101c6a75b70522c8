"""Rendering: Jinja lays out the structure; the maths and the code arrive printed by the
backends (:mod:`derive.emit.numba`, :mod:`derive.emit.latex`). The environment, the layout of
Python statements as the formatter lays them out, stamps and digests, shared by every backend;
the derivation documents; a user's new declaration."""

from __future__ import annotations

import hashlib
import re
import textwrap
from importlib import metadata
from itertools import pairwise
from pathlib import Path

import jinja2
import sympy

from .diagram import UNROLLED
from .latex import Document, activation_derivatives, markdown_escape, tex_escape
from .numba.kernel import Line

__all__ = [
    "LINE_LENGTH",
    "bracket",
    "docstring_escape",
    "environment",
    "inputs_digest",
    "render_catalog",
    "render_derivation",
    "render_new_cell",
    "stamp",
    "template_dir",
    "templates_digest",
]

LINE_LENGTH = 88
TOOL = "gatesmith"


def template_dir() -> Path:
    """The templates: inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent.parent  # the derive package
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "numba" / "kernel.py.j2").is_file():
            return candidate
    raise FileNotFoundError(
        f"{TOOL}: the templates folder is missing (looked in {here})"
    )


def version() -> str:
    try:
        return metadata.version(TOOL)
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["statement"] = statement
    env.filters["comment"] = comment
    env.filters["tex"] = tex_escape
    env.filters["md"] = markdown_escape
    env.filters["py"] = docstring_escape
    env.filters["html"] = html_escape
    env.filters["mathml"] = mathml
    env.filters["md_math"] = markdown_math
    env.globals["bracket"] = bracket
    return env


def html_escape(text: str) -> str:
    """Free text as HTML text: markup characters and quotes as entities, control characters
    as their code points."""
    import html

    text = "".join(ch if ch.isprintable() or ch == " " else f"[U+{ord(ch):04X}]"
                   for ch in str(text))  # fmt: skip
    return html.escape(text, quote=True)


#: The MathML elements a page may hold: presentation markup only (no ``maction``, no
#: ``annotation-xml``, nothing that links, loads or runs).
MATHML_ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace msub msup msubsup munder mover munderover mfrac msqrt "
    "mroot mstyle mpadded mphantom menclose mtable mtr mtd mlabeledtr merror mmultiscripts "
    "mprescripts none".split()
)
#: The attributes those elements may carry, each a keyword or a length (no ``href``, no
#: ``style``, no event handler): :data:`_ATTRIBUTE_VALUE` checks the value.
MATHML_ATTRIBUTES = frozenset(
    "display mathvariant stretchy fence separator form lspace rspace width height depth "
    "accent accentunder movablelimits largeop symmetric minsize maxsize displaystyle "
    "scriptlevel columnalign columnspacing rowspacing columnlines rowlines rowalign frame "
    "framespacing equalrows equalcolumns linethickness notation mathsize".split()
)
_ATTRIBUTE_VALUE = re.compile(r"[A-Za-z0-9 .%+-]*")
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"


def mathml(latex: str, display: bool = False) -> str:
    """LaTeX mathematics as MathML, converted here, so that a page needs no script to show
    it (``latex2mathml``, the ``docs`` extra). The converter's tree is printed here, through
    :func:`mathml_markup`'s allow-list, not by the converter: it writes the text of
    ``\\text{...}`` into the page unescaped."""
    try:
        from latex2mathml.converter import convert_to_element
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "--format html needs latex2mathml: pip install latex2mathml (or gatesmith[docs])"
        ) from error
    element = convert_to_element(latex, display="block" if display else "inline")
    _join_plus_equals(element)
    return mathml_markup(element)


def _join_plus_equals(element) -> None:
    """``\\mathrel{+}=`` as one operator ``+=``: the converter nests an ``<mo>`` in an ``<mo>``
    beside ``=``, which a browser spaces as two."""
    for parent in element.iter():
        children = list(parent)
        for first, second in zip(children, children[1:], strict=False):
            # the converter writes characters as entities: &#x0002B; is +, &#x0003D; is =
            if (first.tag == "mo" and second.tag == "mo"
                    and "".join(first.itertext()) == "&#x0002B;"
                    and second.text == "&#x0003D;"):  # fmt: skip
                first.clear()
                first.text = "&#x0002B;&#x0003D;"
                parent.remove(second)
                break


def mathml_markup(element) -> str:
    """An ``ElementTree`` element of MathML as markup, through allow-lists: an element not on
    :data:`MATHML_ELEMENTS` is an error, an attribute not on :data:`MATHML_ATTRIBUTES` (or
    with a value other than a keyword or a length) is dropped, text is escaped and every
    character outside ASCII written as its code point."""
    out = []
    stack = [(element, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            out.append(f"</{node.tag}>")
            if node.tail:
                out.append(_mathml_text(node.tail))
            continue
        if node.tag not in MATHML_ELEMENTS:
            raise ValueError(f"MathML element {node.tag!r} is not allowed in a page")
        attributes = "".join(
            f' {name}="{value}"'
            for name, value in sorted(node.attrib.items())
            if name in MATHML_ATTRIBUTES and _ATTRIBUTE_VALUE.fullmatch(value)
        )
        if node.tag == "math":
            attributes = f' xmlns="{MATHML_NAMESPACE}"' + attributes
        out.append(f"<{node.tag}{attributes}>")
        if node.text:
            out.append(_mathml_text(node.text))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node)))
    return "".join(out)


def _mathml_text(text: str) -> str:
    """Text of a MathML element: the converter leaves character references (``&#x02032;``)
    in it, which are read first; then markup characters become entities, and every other
    character outside printable ASCII a character reference."""
    import html

    out = []
    for ch in html.unescape(text):
        if ch.isascii() and ch.isprintable():
            out.append({"&": "&amp;", "<": "&lt;", ">": "&gt;"}.get(ch, ch))
        else:  # a control character has no reference a page may hold: the replacement mark
            out.append(f"&#x{ord(ch) if ch.isprintable() else 0xFFFD:05X};")
    return "".join(out)


def markdown_math(latex: str, display: bool = False) -> str:
    """LaTeX as Markdown mathematics: a ```` ```math ```` fence, or inline ``$`...`$``. Both
    are code to a Markdown reader, so nothing inside is read as Markdown; what could end the
    code (a backtick) is refused, and inline (where it may stand in a table) what could split
    a table row (``|``) or a line, as is anything outside printable ASCII."""
    allowed = _MARKDOWN_MATH_DISPLAY if display else _MARKDOWN_MATH_INLINE
    bad = sorted(set(latex) - allowed)
    if bad:
        raise ValueError(f"mathematics for Markdown may not hold {bad}: {latex[:80]!r}")
    return f"```math\n{latex.strip(chr(10))}\n```" if display else f"$`{latex}`$"


_MARKDOWN_MATH_INLINE = frozenset(chr(c) for c in range(32, 127)) - set("`|")
_MARKDOWN_MATH_DISPLAY = _MARKDOWN_MATH_INLINE | {"\n", "|"}


def docstring_escape(text: str) -> str:
    """Free text as the inside of a ``\"\"\"`` docstring that reads back as ``text``.

    Backslashes and double quotes are escaped, so nothing can close the docstring or start an
    escape; control, separator and other unprintable characters become escapes, so the line
    structure and the file's encoding are the template's."""
    out = []
    for ch in str(text):
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def comment(text: str, indent: int) -> str:
    """``# text``, filled into lines that fit at ``indent``."""
    lines = textwrap.wrap(text, LINE_LENGTH - indent - 2)
    return ("\n" + " " * indent).join(f"# {line}" for line in lines)


def statement(line: Line, indent: int) -> str:
    """``target op value`` (a call where ``op`` is empty), laid out as the formatter lays it
    out when it is too long for one line: a call, or a value with one operator or none, split
    inside the brackets that close it; else the value in brackets of its own, split at its
    operators."""
    text = f"{line.target} {line.op} {line.value}" if line.op else line.target
    if indent + len(text) <= LINE_LENGTH:
        return text
    if not line.op:  # a call: split inside its brackets
        return _split_last_bracket(text, indent)
    if len(_delimiters(line.value)[1]) < 2:
        split = _split_last_bracket(text, indent)
        if split != text:
            return split
    body = "\n".join(_layout(line.value, indent + 4))
    return f"{line.target} {line.op} (\n{body}\n{' ' * indent})"


def _split_last_bracket(text: str, indent: int) -> str:
    """A line too long for its width, split inside the brackets that close it, as the
    formatter does: ``head(`` / the contents, indented and laid out / ``)``."""
    split = _closing_bracket(text)
    if split is None or split[0] == "(" or indent + len(split[0]) > LINE_LENGTH:
        return text
    head, inner, tail = split
    lines = _layout(inner, indent + 4)
    if any(len(line) > LINE_LENGTH for line in lines):
        return text
    return "\n".join([head, *lines, " " * indent + tail])


def _closing_bracket(text: str) -> tuple[str, str, str] | None:
    """``text`` as ``head(``, the contents and ``)`` (with a trailing comma), split at the
    brackets that close it; None where it does not end with a bracket."""
    end = len(text) - 1 if text.endswith(",") else len(text)
    if end < 1 or text[end - 1] not in ")]":
        return None
    depth = 0
    for i in range(end - 1, -1, -1):
        depth += {")": 1, "]": 1, "(": -1, "[": -1}.get(text[i], 0)
        if depth == 0:
            break
    return text[: i + 1], text[i + 1 : end - 1], text[end - 1 :]


#: The formatter's splitting order: commas first, then sums, then products.
_PRIORITY = {",": 3, "+": 2, "-": 2, "*": 1, "/": 1}


def _delimiters(text: str) -> tuple[int, list[int]]:
    """The priority and positions of the outermost delimiters of the highest priority in
    ``text``: commas but a trailing one, and binary operators (a space either side)."""
    found: dict[int, list[int]] = {}
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        binary = ch in "+-*/" and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " "
        comma = ch == "," and i < len(text) - 1  # a trailing comma splits nothing
        if depth == 0 and i > 0 and (comma or binary):
            found.setdefault(_PRIORITY[ch], []).append(i)
    if not found:
        return 0, []
    top = max(found)
    return top, found[top]


def _layout(text: str, indent: int) -> list[str]:
    """The lines of ``text`` inside brackets, as the formatter lays them out: whole where it
    fits; else one item a line (with a trailing comma) or one operand a line (led by its
    operator) at the outermost delimiters of highest priority; else split inside the brackets
    that close it. Each line comes indented."""
    pad = " " * indent
    if indent + len(text) <= LINE_LENGTH:
        return [pad + text]
    priority, positions = _delimiters(text)
    if positions:
        cuts = [0, *positions, len(text)]
        if priority == _PRIORITY[","]:
            pieces = [text[a:b].strip(" ,") + "," for a, b in pairwise(cuts)]
            pieces = [piece for piece in pieces if piece != ","]
        else:
            pieces = [text[a:b].strip() for a, b in pairwise(cuts)]
        return [line for piece in pieces for line in _layout(piece, indent)]
    split = _closing_bracket(text)
    if split is None:
        return [pad + text]
    head, inner, tail = split
    return [pad + head, *_layout(inner, indent + 4), pad + tail]


def bracket(items, head: str, tail: str = "", indent: int = 0, hug: bool = True) -> str:
    """``head(items)tail`` laid out as the formatter does: on one line if it fits, else (for
    calls and signatures, ``hug``) the items on one indented line, else one item a line with a
    trailing comma."""
    items = list(items)
    if len(items) == 1 and head.endswith("("):
        items[0] += ","
    one = f"{head}{', '.join(items)}{tail}"
    if indent + len(one) <= LINE_LENGTH:
        return one
    pad = " " * (indent + 4)
    close = head[-1].translate(str.maketrans("([{", ")]}"))
    one_line = f"{pad}{', '.join(items)}"
    if hug and len(one_line) <= LINE_LENGTH:
        return f"{head}\n{one_line}\n{' ' * indent}{close}{tail[1:]}"
    lines = "".join(f"{pad}{item},\n" for item in items)
    return f"{head}\n{lines}{' ' * indent}{close}{tail[1:]}"


def inputs_digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def stamp(comment: str, what: str, digest: str, command: str = "generate") -> str:
    """The header of every generated file: what made it, from what, not to edit it, and the
    command that writes it again."""
    versions = f"sympy {sympy.__version__}, jinja2 {jinja2.__version__}"
    return (
        f"{comment} Generated by {TOOL} {version()} from {what}. Do not edit this file:\n"
        f"{comment} change the declaration and run `{TOOL} {command}`.\n"
        f"{comment} {versions}; inputs sha256:{digest}"
    )


def templates_digest(names: tuple[str, ...]) -> bytes:
    root = template_dir()
    return b"".join((root / name).read_bytes() for name in names)


def render_new_cell(name: str) -> str:
    """A user's starting declaration (``gatesmith new NAME``): a commented minimal gated unit."""
    from ..symbolic.declare import DeclarationError, _check_name

    try:
        _check_name(name, "variant", "gatesmith new")
    except DeclarationError as error:
        raise SystemExit(f"gatesmith: {error}") from None
    return environment().get_template("new_cell.py.j2").render(name=name)


#: Derivation formats: file suffix, then the templates of one variant's document, of the
#: combined document, and of the body they share.
FORMATS = {
    "latex": (".tex", "derivation.tex.j2", "catalog.tex.j2", "derivation_body.tex.j2"),
    "markdown": (".md", "derivation.md.j2", "catalog.md.j2", "derivation_body.md.j2"),
    "html": (
        ".html",
        "derivation.html.j2",
        "catalog.html.j2",
        "derivation_body.html.j2",
    ),
}


def _doc_stamp(fmt: str, what: str, digest: str) -> str:
    if fmt == "latex":
        return stamp("%", what, digest, "docs")
    lines = stamp("", what, digest, "docs").splitlines()
    return "\n".join(f"<!-- {line.strip()} -->" for line in lines)


def render_derivation(doc: Document, fmt: str = "latex") -> str:
    """One variant's derivation document, in ``fmt`` (``latex`` or ``markdown``)."""
    _, template, _, shared = FORMATS[fmt]
    names = (template, shared) + (("page.html.j2",) if fmt == "html" else ())
    digest = inputs_digest(doc.spec.fingerprint(), templates_digest(names))
    return (
        environment()
        .get_template(template)
        .render(
            stamp=_doc_stamp(fmt, f'the declaration of "{doc.spec.name}"', digest),
            doc=doc,
        )
    )


def render_catalog(docs: list[Document], fmt: str = "latex") -> str:
    """One document in ``fmt`` with an introduction, a table of contents (links and PDF
    bookmarks in LaTeX, links in Markdown) and a section per variant."""
    _, _, template, shared = FORMATS[fmt]
    names = (template, shared, "intro.j2") + (
        ("page.html.j2",) if fmt == "html" else ()
    )
    digest = inputs_digest(
        *(d.spec.fingerprint() for d in docs), templates_digest(names)
    )
    return (
        environment()
        .get_template(template)
        .render(
            stamp=_doc_stamp(fmt, "the registered declarations", digest),
            docs=docs,
            version=version(),
            derivatives=activation_derivatives(),
            unrolled=UNROLLED,
        )
    )
