"""Every image and every internal link of the documentation resolves.

Pages: README.md and docs/**/*.md. A link is internal when it has no URL
scheme (http:, https:, mailto:, ...): a relative path must name an existing
file or directory (relative to the page), and a #fragment must be the
GitHub-style anchor of a heading of the target page (the page itself for a
bare '#fragment'). Links inside code (fenced blocks and `inline code`) are
not links and are skipped.
"""
import glob
import os
import re
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, 'README.md')] + sorted(
    glob.glob(os.path.join(REPO, 'docs', '**', '*.md'), recursive=True))

_FENCED = re.compile(r'^(```|~~~).*?^\1[ \t]*$', re.S | re.M)
_INLINE_CODE = re.compile(r'`[^`\n]*`')
# [text](target) and ![alt](target), with an optional "title"; the text may
# hold one level of brackets (an image inside a link).
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?'
                   r'(?:\s+"[^"]*")?\s*\)')
_HTML_TARGET = re.compile(r'<(?:img|a)\b[^>]*?\b(?:src|href)="([^"]*)"', re.I)
_HEADING = re.compile(r'^#{1,6}[ \t]+(.+?)[ \t#]*$', re.M)
_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')


def _without_code(text: str) -> str:
  return _INLINE_CODE.sub('', _FENCED.sub('', text))


def slug(heading: str) -> str:
  """GitHub's anchor for a heading's text (before de-duplication).

  Markdown emphasis and code marks are dropped, the text lowercased, every
  character other than a letter, digit, space, hyphen or underscore
  removed, and each space replaced by a hyphen.
  """
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links -> text
  text = re.sub(r'[`*]', '', text).strip().lower()
  text = ''.join(c for c in text if c.isalnum() or c in ' -_')
  return text.replace(' ', '-')


def anchors(path: str) -> set[str]:
  """The anchors of a page's headings, numbered -1, -2, ... on repeats."""
  with open(path, encoding='utf-8') as f:
    text = _FENCED.sub('', f.read())
  seen: dict[str, int] = {}
  out = set()
  for heading in _HEADING.findall(text):
    base = slug(heading)
    n = seen.get(base, 0)
    seen[base] = n + 1
    out.add(base if n == 0 else f'{base}-{n}')
  return out


def links(path: str) -> list[str]:
  with open(path, encoding='utf-8') as f:
    text = _without_code(f.read())
  return _LINK.findall(text) + _HTML_TARGET.findall(text)


def broken_links(path: str) -> list[str]:
  """'target: why' for each internal link of the page that does not resolve."""
  problems = []
  for target in links(path):
    if not target or _SCHEME.match(target):
      continue
    file_part, _, fragment = target.partition('#')
    file_part = urllib.parse.unquote(file_part)
    resolved = (os.path.normpath(os.path.join(os.path.dirname(path),
                                              file_part))
                if file_part else path)
    if not os.path.exists(resolved):
      problems.append(f'{target}: no file {os.path.relpath(resolved, REPO)}')
      continue
    if fragment:
      if not resolved.endswith('.md'):
        problems.append(f'{target}: an anchor into a file that is not '
                        'Markdown')
      elif urllib.parse.unquote(fragment) not in anchors(resolved):
        problems.append(f'{target}: no heading with anchor #{fragment} in '
                        f'{os.path.relpath(resolved, REPO)}')
  return problems


def test_slugs_follow_github():
  assert slug('1. Where the Transformer came from') == \
      '1-where-the-transformer-came-from'
  assert slug('6.3 Running `train.py`') == '63-running-trainpy'
  assert slug('Appendix A. Engineering notes') == 'appendix-a-engineering-notes'
  assert slug('5. Variants: encoder-only, decoder-only, encoder-decoder') == \
      '5-variants-encoder-only-decoder-only-encoder-decoder'


def test_checker_finds_broken_links(tmp_path):
  (tmp_path / 'there.md').write_text('# A heading\n## A heading\n')
  page = tmp_path / 'page.md'
  page.write_text(
      '# Top\n[ok](there.md#a-heading-1) [ok](#top) ![ok](there.md)\n'
      '[web](https://example.com/x.md) `[code](missing.md)`\n'
      '```\n[fenced](missing.md)\n```\n'
      '[bad file](missing.md) [bad anchor](there.md#nope) ![bad](img.png)\n')
  assert [p.split(':')[0] for p in broken_links(str(page))] == [
      'missing.md', 'there.md#nope', 'img.png']


@pytest.mark.parametrize('page', [os.path.relpath(p, REPO) for p in PAGES])
def test_every_image_and_internal_link_resolves(page):
  problems = broken_links(os.path.join(REPO, page))
  assert not problems, f'{page}:\n' + '\n'.join(problems)
