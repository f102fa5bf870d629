"""Format and coverage of the knowledge corpus (ecgkit/knowledge/corpus).

The corpus has three parts, all Markdown with YAML front matter:

* ``expert/conditions/<key>.md``: one card for every condition in ``catalog.CONDITIONS``;
* ``expert/features/<key>.md``: one card for every feature in ``catalog.FEATURES``;
* ``documents/*.md``: textbook-style chapters (at least 10).

Cards repeat the catalog's fields in their front matter, and these must agree with the catalog,
so that retrieval results can be joined back to the rule module and the feature extractor.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import ecgkit.knowledge
from ecgkit.knowledge.catalog import CONDITIONS, FEATURES

CORPUS = Path(ecgkit.knowledge.__file__).resolve().parent / "corpus"
CONDITION_DIR = CORPUS / "expert" / "conditions"
FEATURE_DIR = CORPUS / "expert" / "features"
DOCUMENT_DIR = CORPUS / "documents"

MIN_BODY = 600
CONDITION_BODY = (1200, 2500)
MIN_DOCUMENTS = 10

COMMON_SECTIONS = ("Definition", "References")
CONDITION_SECTIONS = ("Definition", "Criteria", "Waveform", "Differential diagnosis",
                      "PTB-XL statements", "References")
FEATURE_SECTIONS = ("Definition", "Measurement", "Normal values", "Clinical significance", "References")

# catalog fields a card's front matter must repeat exactly
CONDITION_FIELDS = ("key", "name", "category", "superclasses", "scp_codes")
FEATURE_FIELDS = ("key", "name")
FEATURE_OPTIONAL_FIELDS = ("unit", "scope", "description")  # compared when the card states them

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.DOTALL)


def parse(path: Path) -> tuple[dict, str]:
    """Front matter (a mapping) and body of a corpus file; fails on bad encoding or layout."""
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), f"{path.name}: UTF-8 byte-order mark"
    text = raw.decode("utf-8")  # strict: raises on anything that is not UTF-8
    assert "\r" not in text, f"{path.name}: carriage returns (use LF line endings)"
    match = FRONT_MATTER.match(text)
    assert match, f"{path.name}: no '---' front matter block at the top"
    meta = yaml.safe_load(match.group(1))
    assert isinstance(meta, dict), f"{path.name}: front matter is not a mapping"
    return meta, match.group(2)


def sections(body: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^## (.+)$", body, re.MULTILINE)]


def section_text(body: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", body, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def catalog_value(obj, field):
    value = getattr(obj, field)
    return list(value) if isinstance(value, tuple) else value


def card_path(kind: str, key: str) -> Path:
    return (CONDITION_DIR if kind == "condition" else FEATURE_DIR) / f"{key}.md"


def load_card(kind: str, key: str) -> tuple[dict, str]:
    path = card_path(kind, key)
    assert path.is_file(), f"missing {kind} card {path.relative_to(CORPUS)}"
    return parse(path)


def check_card(kind: str, key: str, meta: dict, body: str, required: tuple[str, ...]) -> None:
    assert meta.get("kind") == kind, f"{key}: kind is {meta.get('kind')!r}, expected {kind!r}"
    assert meta.get("key") == key, f"{key}: front matter key {meta.get('key')!r} differs from the file name"

    refs = meta.get("references")
    assert isinstance(refs, list) and refs, f"{key}: front matter needs a non-empty 'references' list"
    assert all(isinstance(r, str) and len(r.strip()) > 20 for r in refs), f"{key}: empty or too short reference"
    assert len(set(refs)) == len(refs), f"{key}: duplicate reference"

    assert re.search(r"^# \S", body, re.MULTILINE), f"{key}: no '# Title' heading"
    found = sections(body)
    for title in COMMON_SECTIONS + required:
        assert title in found, f"{key}: missing section '## {title}' (found {found})"
        assert section_text(body, title).strip(), f"{key}: section '## {title}' is empty"
    assert len(found) == len(set(found)), f"{key}: a section appears twice"

    listed = section_text(body, "References")
    for ref in refs:
        assert ref.strip() in listed, f"{key}: front matter reference not listed under '## References': {ref[:60]}"

    assert len(body.strip()) >= MIN_BODY, f"{key}: body has {len(body.strip())} characters, minimum {MIN_BODY}"


# ----------------------------------------------------------------------------- catalog sanity

def test_catalog_keys_unique():
    for items in (CONDITIONS, FEATURES):
        keys = [x.key for x in items]
        assert len(keys) == len(set(keys)), "duplicate keys in the catalog"
    overlap = {c.key for c in CONDITIONS} & {f.key for f in FEATURES}
    assert not overlap, f"keys used both as condition and feature: {overlap}"


# ----------------------------------------------------------------------------- condition cards

@pytest.mark.parametrize("cond", CONDITIONS, ids=lambda c: c.key)
def test_condition_card(cond):
    meta, body = load_card("condition", cond.key)
    check_card("condition", cond.key, meta, body, CONDITION_SECTIONS)
    for field in CONDITION_FIELDS:
        assert meta.get(field) == catalog_value(cond, field), (
            f"{cond.key}: front matter {field}={meta.get(field)!r}, catalog has {catalog_value(cond, field)!r}")
    assert sections(body) == list(CONDITION_SECTIONS), f"{cond.key}: sections out of order: {sections(body)}"

    n = len(body.strip())
    assert CONDITION_BODY[0] <= n <= CONDITION_BODY[1], f"{cond.key}: body {n} characters, expected {CONDITION_BODY}"

    title = re.search(r"^# (.+)$", body, re.MULTILINE).group(1)
    assert title.lower() == cond.name.lower(), f"{cond.key}: title {title!r} differs from the name {cond.name!r}"

    ptbxl = section_text(body, "PTB-XL statements")
    for code in cond.scp_codes:
        assert code in ptbxl, f"{cond.key}: SCP code {code} not explained under '## PTB-XL statements'"
    for title in ("Criteria", "Differential diagnosis"):
        bullets = re.findall(r"^- \S", section_text(body, title), re.MULTILINE)
        assert len(bullets) >= 2, f"{cond.key}: '## {title}' should be a list of at least two bullets"


def test_no_stray_condition_cards():
    keys = {c.key for c in CONDITIONS}
    stray = sorted(p.stem for p in CONDITION_DIR.glob("*.md") if p.stem not in keys)
    assert not stray, f"condition cards without a catalog entry: {stray}"


# ----------------------------------------------------------------------------- feature cards

@pytest.mark.parametrize("feat", FEATURES, ids=lambda f: f.key)
def test_feature_card(feat):
    meta, body = load_card("feature", feat.key)
    check_card("feature", feat.key, meta, body, FEATURE_SECTIONS)
    for field in FEATURE_FIELDS:
        assert meta.get(field) == catalog_value(feat, field), (
            f"{feat.key}: front matter {field}={meta.get(field)!r}, catalog has {catalog_value(feat, field)!r}")
    for field in FEATURE_OPTIONAL_FIELDS:
        if field in meta:
            assert meta[field] == catalog_value(feat, field), (
                f"{feat.key}: front matter {field}={meta[field]!r}, catalog has {catalog_value(feat, field)!r}")


def test_no_stray_feature_cards():
    keys = {f.key for f in FEATURES}
    stray = sorted(p.stem for p in FEATURE_DIR.glob("*.md") if p.stem not in keys)
    assert not stray, f"feature cards without a catalog entry: {stray}"


# ----------------------------------------------------------------------------- all expert cards

def test_expert_keys_unique_across_cards():
    seen: dict[str, Path] = {}
    for path in sorted(CONDITION_DIR.glob("*.md")) + sorted(FEATURE_DIR.glob("*.md")):
        meta, _ = parse(path)
        key = meta.get("key")
        assert key not in seen, f"key {key!r} used by both {seen.get(key)} and {path}"
        seen[key] = path


# ----------------------------------------------------------------------------- documents

def _documents() -> list[Path]:
    return sorted(DOCUMENT_DIR.glob("*.md")) if DOCUMENT_DIR.is_dir() else []


def test_documents_count():
    docs = _documents()
    if not docs:
        pytest.skip(f"{DOCUMENT_DIR.relative_to(CORPUS.parent)} holds no chapters yet (written separately)")
    assert len(docs) >= MIN_DOCUMENTS, f"{len(docs)} documents, expected at least {MIN_DOCUMENTS}"


def test_documents_format():
    docs = _documents()
    if not docs:
        pytest.skip("no documents yet")
    titles = []
    for path in docs:
        meta, body = parse(path)
        assert meta.get("kind") == "document", f"{path.name}: kind is {meta.get('kind')!r}"
        title = meta.get("title")
        assert isinstance(title, str) and title.strip(), f"{path.name}: no title"
        titles.append(title.strip().lower())
        refs = meta.get("references")
        assert isinstance(refs, list) and refs, f"{path.name}: no references"
        assert all(isinstance(r, str) and r.strip() for r in refs), f"{path.name}: empty reference"
        assert re.search(r"^# \S", body, re.MULTILINE), f"{path.name}: no '# Title' heading"
        assert len(body.strip()) >= MIN_BODY, f"{path.name}: body shorter than {MIN_BODY} characters"
    assert len(titles) == len(set(titles)), "two documents share a title"
