"""The append-only results store: one SQLite file per run directory.

Tables
------
``meta``     key/value: the suite name, its exact config (JSON and TOML text), ``quick``,
             package versions, creation time, the metrics' metadata and the run's plan
             (``deletion_output``, the pairs that are no units, the metric cells that do
             not apply: :func:`xai_suite.bench.runner.run_suite`).
``results``  one row per instance-level measurement: suite, dataset, model, seed, explainer,
             baseline, metric, instance (row of the test split), value (NULL for NaN), seconds
             (explain time per instance in that unit); UNIQUE over the identifying columns.
``curves``   deletion / insertion curves: the identifying columns, then step (0..S-1),
             fraction (of the elements removed or inserted) and value (the model's output
             for the explained class); UNIQUE over the identifying columns and step. The
             ``results`` row of the same metric and instance holds the curve's trapezoid area.
``models``   one row per trained model (suite, dataset, model, seed): test rows, correct
             predictions, accuracy, classes, and the share of the commonest test class.
``units``    one row per finished unit: status ``done`` or ``error`` (with the message),
             explained instances, seconds, finish time.
``log``      why a metric was skipped or failed; each message once.

Each unit's rows, curves, model row and ``units`` record are written in one transaction, so
a run killed at any point (Ctrl-C, ``kill -9``) leaves whole units only, and a resumed run
skips exactly the units recorded. The UNIQUE keys make a second copy of a measurement an
error, never a silent duplicate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STORE_NAME = "results.sqlite"
ID_COLUMNS = ("suite", "dataset", "model", "seed", "explainer", "baseline", "metric", "instance")
_ID_DEFS = ", ".join(f"{c} {'INTEGER' if c in ('seed', 'instance') else 'TEXT'} NOT NULL" for c in ID_COLUMNS)
_ID_KEY = ", ".join(ID_COLUMNS)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results ({_ID_DEFS}, value REAL, seconds REAL NOT NULL, UNIQUE ({_ID_KEY}));
CREATE TABLE IF NOT EXISTS curves ({_ID_DEFS}, step INTEGER NOT NULL, fraction REAL NOT NULL, value REAL,
    UNIQUE ({_ID_KEY}, step));
CREATE TABLE IF NOT EXISTS models (suite TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
    seed INTEGER NOT NULL, n_test INTEGER NOT NULL, n_correct INTEGER NOT NULL, accuracy REAL NOT NULL,
    n_classes INTEGER NOT NULL, majority REAL NOT NULL, PRIMARY KEY (suite, dataset, model, seed));
CREATE TABLE IF NOT EXISTS units (unit TEXT PRIMARY KEY, suite TEXT NOT NULL, dataset TEXT NOT NULL,
    model TEXT NOT NULL, seed INTEGER NOT NULL, explainer TEXT NOT NULL, baseline TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'error')), error TEXT, n_instances INTEGER,
    seconds REAL NOT NULL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, unit TEXT NOT NULL, message TEXT NOT NULL UNIQUE);
"""


@dataclass
class UnitResult:
    """What a worker returns for one unit; the parent process writes it.

    ``rows``: ``(metric, instance, value, seconds)`` tuples; ``curves``: ``(metric, instance,
    step, fraction, value)`` tuples; ``model_quality``: see
    :func:`xai_suite.bench.runner.model_quality` (``None`` if the unit failed before training).
    """

    key: str
    dataset: str
    model: str
    seed: int
    explainer: str
    baseline: str
    status: str = "done"
    error: str | None = None
    n_instances: int = 0
    seconds: float = 0.0
    rows: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    model_quality: dict | None = None


def store_path(path) -> Path:
    """The SQLite file: ``path`` itself, or ``path/results.sqlite`` for a directory."""
    path = Path(path)
    return path / STORE_NAME if path.is_dir() or path.suffix == "" else path


class StoreFullError(OSError):
    """The disk (or the database's size limit) is full: the unit was not stored."""


class ResultsStore:
    """An open results store (use as a context manager, or call :meth:`close`).

    Parameters
    ----------
    path : str or Path
        The SQLite file or the run directory holding it.
    create : bool
        Create the file if missing; otherwise a missing store raises ``FileNotFoundError``.
    """

    def __init__(self, path, *, create: bool = False):
        self.path = store_path(path)
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(f"no results store at {str(self.path)!r}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")  # a reader (report) never blocks the runner
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed unit survives power loss
        with self.conn:
            self.conn.executescript(SCHEMA)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- metadata ------------------------------------------------------------------------------
    def meta(self) -> dict:
        """Every ``meta`` entry, JSON values decoded."""
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def init_run(self, suite_name: str, config: dict, source: str, quick: bool, versions: dict,
                 metrics: dict | None = None, plan: dict | None = None) -> None:
        """Record the run's identity, or check that a resumed run has the same config.

        ``metrics`` maps each metric name to its registry metadata (kind, needs, direction),
        and ``plan`` says what the expansion left out and in which space removal metrics
        follow the model, so that a report reads them without importing the suite's plugins.

        Raises
        ------
        ValueError
            If the store holds results of another suite or config.
        """
        config_json = json.dumps(config, sort_keys=True)
        meta = self.meta()
        if meta:
            same = json.dumps(meta.get("config"), sort_keys=True) == config_json
            if meta.get("suite") != suite_name or not same:
                raise ValueError(f"{self.path} holds results of suite {meta.get('suite')!r} with another "
                                 f"config (quick={meta.get('quick')}); resume only with the same config, or "
                                 "give another output directory")
            with self.conn:
                self._put("versions_resumed", versions)
            return
        with self.conn:
            for key, value in (("suite", suite_name), ("config", config), ("config_toml", source),
                               ("quick", quick), ("versions", versions), ("metrics", metrics or {}),
                               ("plan", plan or {}), ("created", time.time())):
                self._put(key, value)

    def _put(self, key: str, value) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- units ---------------------------------------------------------------------------------
    def finished_units(self) -> set[str]:
        """Keys of the units already recorded (done or failed)."""
        return {k for (k,) in self.conn.execute("SELECT unit FROM units")}

    def write_unit(self, suite_name: str, r: UnitResult) -> None:
        """Write a unit's rows, curves, model quality, log messages and record in one transaction.

        The model row is written by the first unit of its model; later units carry the same
        numbers (a seed fixes the trained model) and are ignored there.
        """
        ident = (suite_name, r.dataset, r.model, r.seed, r.explainer, r.baseline)
        try:
            self._write_unit(ident, r)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc):
                raise
            raise StoreFullError(f"the disk holding {str(self.path)!r} is full ({exc}): unit {r.key} "
                                 "was not stored, every unit stored before it is intact; free space and "
                                 "run the same command again to resume") from None

    def _write_unit(self, ident: tuple, r: UnitResult) -> None:
        with self.conn:  # commits on success, rolls back on any error
            self.conn.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*ident, metric, int(inst), None if value != value else float(value), float(sec))
                 for metric, inst, value, sec in r.rows])
            self.conn.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*ident, metric, int(inst), int(step), float(frac), None if v != v else float(v))
                 for metric, inst, step, frac, v in r.curves])
            if r.model_quality is not None:
                q = r.model_quality
                self.conn.execute(
                    "INSERT OR IGNORE INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ident[0], r.dataset, r.model, r.seed, int(q["n_test"]), int(q["n_correct"]),
                     float(q["accuracy"]), int(q["n_classes"]), float(q["majority"])))
            self.conn.executemany("INSERT OR IGNORE INTO log (unit, message) VALUES (?, ?)",
                                  [(r.key, m) for m in r.logs])
            self.conn.execute("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (r.key, *ident, r.status, r.error, r.n_instances, r.seconds, time.time()))

    # -- reading -------------------------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """Every measurement, one row each (columns of the ``results`` table)."""
        return pd.read_sql_query(f"SELECT * FROM results ORDER BY {_ID_KEY}", self.conn)

    def curves(self) -> pd.DataFrame:
        """Every stored curve point, one row each (columns of the ``curves`` table)."""
        return pd.read_sql_query(f"SELECT * FROM curves ORDER BY {_ID_KEY}, step", self.conn)

    def models(self) -> pd.DataFrame:
        """Test accuracy of every trained model, one row per dataset, model and seed."""
        return pd.read_sql_query("SELECT * FROM models ORDER BY dataset, model, seed", self.conn)

    def units(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM units ORDER BY unit", self.conn)

    def log(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT unit, message FROM log ORDER BY id", self.conn)
