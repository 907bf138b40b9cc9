"""HTML gallery of generated captions (``--gallery DIR`` of ``captioning evaluate``, and ``captioning gallery``).

One self-contained ``index.html``: each image, its caption with object mentions marked (hallucinated ones
highlighted, with their CHAIR category as a tooltip), its references and per-image scores. Captions, file
names and references are untrusted text and are HTML-escaped everywhere.

Images are **referenced, not copied**: each ``<img src>`` is the image's path relative to the gallery folder
(URL-quoted), so a gallery of 5,000 COCO images costs one HTML file; move the gallery together with the
images, or open it where it was written.

``captioning gallery CAPTIONS --images DIR --output DIR [--annotations CAPTIONS.json] [--instances
INSTANCES.json] [--synonyms FILE]`` (:mod:`captioning.cli.gallery`) builds a gallery from batch-captioning output (JSON Lines of ``image_id``,
``file_name``, ``caption``, ``score``) or a COCO results list, without references unless given.
"""

from __future__ import annotations

import html
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from captioning.data.coco import read_instances
from captioning.data.results import InputError, ResultRow, read_annotations
from captioning.evaluation.chair import chair_scores, mention_dicts

_STYLE = """body{font-family:sans-serif;margin:1.5em;background:#fafafa}
.item{display:flex;align-items:flex-start;gap:1em;background:#fff;border:1px solid #ddd;padding:.8em;margin:.6em 0}
.item img{width:224px;height:auto;image-rendering:pixelated;flex:none;object-fit:contain}
.caption{font-size:1.15em;margin:0 0 .4em}
mark.halluc{background:#ffb3b3;padding:0 .15em}
mark.object{background:#c9f0c9;padding:0 .15em}
mark.binding{background:#ffd18a;padding:0 .15em}
.refs{color:#555;margin:.3em 0;padding-left:1.2em}
table.scores td{padding:0 .6em 0 0;font-size:.9em}
pre{background:#fff;border:1px solid #ddd;padding:.6em;white-space:pre-wrap}
.att{display:flex;flex-wrap:wrap;gap:.3em;margin:.4em 0}
.att figure{margin:0;text-align:center;font-size:.8em}
.att canvas{width:72px;height:72px;display:block;border:1px solid #ccc}"""

# Draws each word's attention map over its image: the image, darkened, with the attended regions lit in proportion
# to their weight (the strongest region at full brightness), on a canvas per word.
_SCRIPT = """<script>
document.querySelectorAll('.item').forEach(function (item) {
  var img = item.querySelector('img');
  var canvases = item.querySelectorAll('canvas[data-att]');
  if (!img || !canvases.length) return;
  function draw() {
    canvases.forEach(function (c) {
      var w = c.dataset.att.split(',').map(Number), side = Math.round(Math.sqrt(w.length));
      var max = Math.max.apply(null, w) || 1, ctx = c.getContext('2d'), s = c.width / side;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, c.width, c.height);
      for (var k = 0; k < w.length; k++) {
        ctx.fillStyle = 'rgba(0,0,0,' + (0.85 * (1 - w[k] / max)).toFixed(3) + ')';
        ctx.fillRect((k % side) * s, Math.floor(k / side) * s, s, s);
      }
    });
  }
  if (img.complete) draw(); else img.addEventListener('load', draw);
});
</script>"""


@dataclass
class GalleryItem:
    """One image of the gallery.

    Attributes:
        image_id: COCO image id.
        caption: The generated caption.
        image: Path of the image file.
        references: Reference captions (may be empty).
        scores: Per-image values shown in a small table (name -> value).
        tokens: ``chair.tokens(caption)`` when CHAIR ran (mention indices point into it), else ``None``.
        mentioned: Object mentions (``{"word", "category", "index"}``).
        hallucinated: The hallucinated subset of ``mentioned``.
        binding_errors: ``(colour, category)`` pairs the caption names that its scene does not hold (shapes).
        attention: Per caption word, the attention decoder's weights over the grid's regions (row-major).
    """

    image_id: int
    caption: str
    image: Path
    references: list[str] = field(default_factory=list)
    scores: dict[str, float | int | None] = field(default_factory=dict)
    tokens: list[str] | None = None
    mentioned: list[dict] = field(default_factory=list)
    hallucinated: list[dict] = field(default_factory=list)
    attention: list[list[float]] | None = None
    binding_errors: list[list[str]] = field(default_factory=list)

    @classmethod
    def from_metrics(cls, entry: Mapping, image: Path, references: Sequence[str],
                     tokens: Sequence[str] | None, attention: list[list[float]] | None = None) -> GalleryItem:
        """An item from one ``per_image`` entry of METRICS.json (and the results row's attention maps)."""
        skip = {"image_id", "caption", "mentioned", "hallucinated", "ground_truth", "binding_pairs", "binding_errors"}
        scores = {k: v for k, v in entry.items() if k not in skip}
        return cls(entry["image_id"], entry["caption"], image, list(references), scores,
                   None if tokens is None else list(tokens), list(entry.get("mentioned", [])),
                   list(entry.get("hallucinated", [])), attention, [list(p) for p in entry.get("binding_errors", [])])


def _token_offsets(text: str, tokens: Sequence[str]) -> list[int | None]:
    """Start offset of each token in ``text`` (case-insensitive, left to right); ``None`` where a token was
    rewritten by the tokenizer (e.g. quotes) and cannot be found."""
    lower, cursor, offsets = text.lower(), 0, []
    for token in tokens:
        at = lower.find(token, cursor)
        offsets.append(None if at < 0 else at)
        cursor = cursor if at < 0 else at + len(token)
    return offsets


def highlight(caption: str, tokens: Sequence[str] | None, mentioned: Sequence[Mapping],
              hallucinated: Sequence[Mapping], binding_errors: Sequence[Sequence[str]] = ()) -> str:
    """The caption as escaped HTML with each mention wrapped in ``<mark>``: class ``halluc`` (the object is not
    in the image), ``binding`` (it is, but not in the colour the word before it names: a pair of
    ``binding_errors``) or ``object``.

    Mentions are located by their token index in ``tokens`` (``chair.tokens(caption)``) and span ``length``
    tokens (2 for merged phrases such as ``hot dog``). Where the tokenizer's text cannot be aligned with the
    caption (lower-casing changes its length), the tokens themselves are shown.
    """
    if not tokens or not mentioned:
        return html.escape(caption)
    text = caption if len(caption.lower()) == len(caption) else " ".join(tokens)
    offsets = _token_offsets(text, tokens)
    bad = {(m["index"], m["category"]) for m in hallucinated}
    wrong = {tuple(p) for p in binding_errors}
    spans = []
    for m in mentioned:
        first, last = m["index"], min(m["index"] + m.get("length", 1), len(tokens)) - 1
        if 0 <= first <= last and offsets[first] is not None and offsets[last] is not None:
            colour = tokens[first - 1] if first > 0 else None
            kind = ("halluc" if (first, m["category"]) in bad else
                    "binding" if (colour, m["category"]) in wrong else "object")
            if kind == "binding":  # the colour word is part of the error
                first = first - 1 if offsets[first - 1] is not None else first
            spans.append((offsets[first], offsets[last] + len(tokens[last]), kind, m["category"]))
    titles = {"halluc": "hallucinated: ", "binding": "no object of this colour and category in the image: ",
              "object": "in the image: "}
    out, cursor = [], 0
    for start, end, kind, category in sorted(spans):
        if start < cursor:
            continue
        out.append(html.escape(text[cursor:start]))
        title = titles[kind] + category
        out.append(f'<mark class="{kind}" title="{html.escape(title)}">{html.escape(text[start:end])}</mark>')
        cursor = end
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def _image_src(image: Path, folder: Path) -> str:
    relative = os.path.relpath(os.path.abspath(image), os.path.abspath(folder))
    return html.escape(urllib.parse.quote(Path(relative).as_posix()), quote=True)


def _format(value: float | int | None) -> str:
    return "-" if value is None else (str(value) if isinstance(value, int) else f"{value:.3f}")


def _attention_html(item: GalleryItem) -> str:
    """One canvas per caption word, drawn by the page's script with where the model looked for that word."""
    if not item.attention:
        return ""
    words = item.caption.split()
    figures = "".join(
        f'<figure><canvas width="96" height="96" data-att="{",".join(f"{a:.4g}" for a in weights)}"></canvas>'
        f"<figcaption>{html.escape(word)}</figcaption></figure>"
        for word, weights in zip(words, item.attention))
    return f'<div class="att" title="where the model looked for each word">{figures}</div>'


def _item_html(item: GalleryItem, folder: Path) -> str:
    scores = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_format(v)}</td></tr>"
                     for k, v in item.scores.items() if isinstance(v, (int, float)) or v is None)
    refs = "".join(f"<li>{html.escape(r)}</li>" for r in item.references)
    caption = highlight(item.caption, item.tokens, item.mentioned, item.hallucinated, item.binding_errors)
    return (f'<div class="item" id="img{item.image_id}">'
            f'<img loading="lazy" src="{_image_src(item.image, folder)}" '
            f'alt="{html.escape(item.image.name, quote=True)}"><div>'
            f'<p class="caption">{caption}</p>'
            f'<div>image {item.image_id} · {html.escape(item.image.name)}</div>'
            + _attention_html(item)
            + (f'<ol class="refs">{refs}</ol>' if refs else "")
            + (f'<table class="scores">{scores}</table>' if scores else "") + "</div></div>")


def render_gallery(items: Sequence[GalleryItem], folder: Path, title: str = "captions",
                   summary: str | None = None) -> dict[Path, str]:
    """The gallery's files (``folder/index.html`` -> its HTML), for :func:`write_outputs`."""
    body = "\n".join(_item_html(item, folder) for item in items)
    head = f"<pre>{html.escape(summary)}</pre>" if summary else ""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{head}"
            f'<p>{len(items)} images. <mark class="halluc">hallucinated object</mark> '
            f'<mark class="binding">colour bound to the wrong object</mark> '
            f'<mark class="object">object in the image</mark></p>\n{body}\n'
            + (_SCRIPT if any(item.attention for item in items) else "") + "\n</body></html>\n")
    return {folder / "index.html": page}


def gallery_items(rows: Sequence[ResultRow], images: Path, annotations: str | None, instances: str | None,
           synonyms: str | None, chair_mode: str) -> list[GalleryItem]:
    ann = read_annotations(annotations) if annotations else None
    references = {r.image_id: list(ann.references.get(r.image_id, ())) if ann else [] for r in rows}
    files = {}
    for r in rows:
        name = r.file_name or (ann.file_names.get(r.image_id) if ann else None)
        if name is None:
            raise InputError(f"image_id {r.image_id} has no file_name: pass --annotations to look it up")
        files[r.image_id] = images / name
    chair = None
    if synonyms:
        captions = {r.image_id: r.caption for r in rows}
        chair = chair_scores(captions, references, read_instances(instances) if instances else
                             {"categories": [], "annotations": []}, synonyms, chair_mode)
    items = []
    for r in rows:
        scores = {} if r.score is None else {"score": r.score}
        item = GalleryItem(r.image_id, r.caption, files[r.image_id], references[r.image_id], scores,
                           attention=r.attention)
        if chair is not None:
            image = chair.result.per_image[r.image_id]
            item.tokens = chair.chair.tokens(r.caption)
            item.mentioned = mention_dicts(image.mentioned)
            item.hallucinated = mention_dicts(image.hallucinated) if instances else []
            if chair.binding is not None:
                item.binding_errors = [list(p) for p in chair.binding.per_image[r.image_id].errors]
        items.append(item)
    return items
