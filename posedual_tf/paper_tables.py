"""The papers' tables as data: which config reproduces each cell, what it needs first, and the published
number with the paper it comes from (``posedual_tf/tables/*.yaml``, read by ``python -m posedual_tf.reproduce``).

A table has columns (labelled-set sizes, backbones) and rows (methods); a cell names at most one config
(none where neither reference has a recipe: the published number is still shown) and may list runs that
must end first (``after``). ``compare`` says which of our numbers stands beside the published one:
``net1`` (PoseDual's model selection), ``mean`` (the two networks' mean: MultiAugs' "Dual" numbers) or
``ensemble``; a single-network run has one number, whatever ``compare`` says.

Example:
    >>> from posedual_tf import paper_tables
    >>> table = paper_tables.load("posedual_coco")
    >>> cell = table.cell("PoseDual, Affine", "1K")
    >>> cell.config, cell.published, cell.compare
    ('coco1k_dual', 41.5, 'net1')
    >>> paper_tables.plan(table)[:3]
    ['coco1k_sup', 'coco5k_sup', 'coco10k_sup']
"""
from __future__ import annotations

import dataclasses
import pathlib

import yaml

TABLES_DIR = pathlib.Path(__file__).resolve().parent / "tables"     # shipped inside the package
#: What a cell's ``compare`` may name.
COMPARE = ("net1", "net2", "mean", "ensemble")
_TABLE_KEYS = {"title", "metric", "compare", "sources", "columns", "rows", "published_split"}
_ROW_KEYS = {"name", "augmentation", "cells", "note", "compare", "source"}
_CELL_KEYS = {"config", "published", "compare", "source", "after"}


class TableError(ValueError):
    """A table file that does not say what a table must (one line naming the file and the field)."""


@dataclasses.dataclass(frozen=True)
class Cell:
    row: str                        # the row's label: "PoseDual, Affine + RandAug"
    column: str
    config: str | None              # None: no recipe to run (the published number is shown alone)
    published: float | None         # None: nothing published for this cell
    source: str                     # the paper and table the published number comes from
    compare: str                    # which of our numbers stands beside it (COMPARE)
    after: tuple[str, ...] = ()     # configs whose runs end before this one starts
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    title: str
    metric: str                     # AP (COCO, shown in percent) or PCKh (MPII Mean)
    columns: tuple[str, ...]
    cells: tuple[Cell, ...]
    published_split: str = ""       # where the published numbers were measured, when not where ours are

    def cell(self, row: str, column: str) -> Cell:
        for c in self.cells:
            if c.row == row and c.column == column:
                return c
        raise KeyError(f"{self.name}: no cell ({row!r}, {column!r})")

    def rows(self) -> list[str]:
        return list(dict.fromkeys(c.row for c in self.cells))

    def configs(self) -> list[str]:
        """The table's configs, once each, in the table's order."""
        return list(dict.fromkeys(c.config for c in self.cells if c.config))


def names() -> list[str]:
    return sorted(p.stem for p in TABLES_DIR.glob("*.yaml"))


def load(name: str) -> Table:
    """The shipped table ``name`` (:func:`names`), or a table file by path; TableError (one line) for a
    table that is not well formed, names a config that does not exist or orders its runs in a cycle."""
    path = pathlib.Path(name)
    if not (name.endswith((".yaml", ".yml")) and path.is_file()):
        path = TABLES_DIR / f"{name}.yaml"
        if not path.is_file():
            raise TableError(f"--table {name}: no such table; expected one of {', '.join(names())} or a .yaml file")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise TableError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    table = _parse(raw, path)
    plan(table)                     # a cycle is an error when the table is read, not when it runs
    return table


def _parse(raw, path) -> Table:
    from posedual_tf import config

    def need(ok: bool, where: str, expected: str):
        if not ok:
            raise TableError(f"{path}: {where}: expected {expected}")

    need(isinstance(raw, dict), "the file", "a mapping with title, metric, columns and rows")
    _no_unknown(raw, _TABLE_KEYS, path, "the table")
    for key in ("title", "metric", "columns", "rows"):
        need(key in raw, key, "a value (missing)")
    need(raw["metric"] in ("AP", "PCKh"), "metric", "AP or PCKh")
    columns = raw["columns"]
    need(isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns), "columns",
         "a list of column names")
    sources = raw.get("sources") or {}
    need(isinstance(sources, dict), "sources", "a mapping of source name to its citation")
    known = set(config.available())
    cells = []
    need(isinstance(raw["rows"], list) and raw["rows"], "rows", "a list of rows")
    for i, row in enumerate(raw["rows"]):
        where = f"rows[{i}]"
        need(isinstance(row, dict) and isinstance(row.get("name"), str), where, "a mapping with a name")
        _no_unknown(row, _ROW_KEYS, path, where)
        label = row["name"] + (f", {row['augmentation']}" if row.get("augmentation") else "")
        need(isinstance(row.get("cells"), dict) and row["cells"], f"{where}.cells", "a mapping column -> cell")
        for column, c in row["cells"].items():
            at = f"{where}.cells.{column}"
            need(column in columns, at, f"one of the columns {columns}")
            need(isinstance(c, dict), at, "a mapping with config and/or published")
            _no_unknown(c, _CELL_KEYS, path, at)
            name = c.get("config")
            need(name is None or name in known, f"{at}.config", "the name of a shipped config "
                                                                "(python -m posedual_tf.train --help lists them)")
            published = c.get("published")
            need(published is None or isinstance(published, (int, float)) and not isinstance(published, bool),
                 f"{at}.published", "a number")
            need(name or published is not None, at, "a config or a published number")
            compare = c.get("compare", row.get("compare", raw.get("compare", "net1")))
            need(compare in COMPARE, f"{at}.compare", f"one of {', '.join(COMPARE)}")
            source = c.get("source", row.get("source"))
            if source is None and len(sources) == 1:
                source = next(iter(sources))
            need(published is None or source in sources, f"{at}.source", f"one of the sources {sorted(sources)}")
            after = c.get("after") or []
            need(isinstance(after, list) and all(isinstance(a, str) for a in after), f"{at}.after",
                 "a list of config names")
            cells.append(Cell(label, column, name, None if published is None else float(published),
                              sources.get(source, ""), compare, tuple(after), str(row.get("note", ""))))
    table = Table(path.stem, str(raw["title"]), raw["metric"], tuple(columns), tuple(cells),
                  str(raw.get("published_split", "")))
    runs = set(table.configs())
    for c in cells:
        for a in c.after:
            need(a in runs, f"{c.row} / {c.column}: after", f"configs of this table ({a} is not one)")
    return table


def _no_unknown(mapping: dict, allowed: set, path, where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise TableError(f"{path}: {where}: unknown field {unknown[0]!r}; expected one of {', '.join(sorted(allowed))}")


def plan(table: Table) -> list[str]:
    """The table's configs in the order they run: every run after the runs it names in ``after``,
    otherwise in the table's order. TableError for a cycle."""
    after: dict[str, set[str]] = {name: set() for name in table.configs()}
    for c in table.cells:
        if c.config:
            after[c.config] |= set(c.after)
    order: list[str] = []
    while len(order) < len(after):
        ready = [n for n in after if n not in order and after[n] <= set(order)]
        if not ready:
            stuck = sorted(n for n in after if n not in order)
            raise TableError(f"{table.name}: the runs {', '.join(stuck)} wait for each other (a cycle in 'after')")
        order.append(ready[0])
    return order


def depends_on(table: Table, name: str) -> list[str]:
    """The configs that must end before ``name`` starts."""
    return sorted({a for c in table.cells if c.config == name for a in c.after})
