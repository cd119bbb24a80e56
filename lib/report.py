"""Markdown tables for results files and READMEs."""

from typing import Any, Sequence


def _cell(value: Any, digits: int) -> str:
  if value is None:
    return '-'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, float):
    return f'{value:.{digits}g}'
  return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | dict,
                   digits: int = 4) -> str:
  """A Markdown table: one row per dict, `columns` its keys in order.

  `columns` may map each key to its header text; floats get `digits`
  significant digits, None prints as '-'.
  """
  headers = dict(columns) if isinstance(columns, dict) else {
      c: c for c in columns}
  lines = ['| ' + ' | '.join(headers.values()) + ' |',
           '|' + '---|' * len(headers)]
  for row in rows:
    lines.append('| ' + ' | '.join(_cell(row.get(key), digits)
                                   for key in headers) + ' |')
  return '\n'.join(lines) + '\n'
