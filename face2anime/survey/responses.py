"""The survey's responses file: one CSV row per answer, appended so that nothing is ever lost
or corrupted, and the validation of an answer before it is written.

Durability: each answer is one ``os.write`` of one complete line to a file opened with
``O_APPEND``, followed by ``fsync``, done under a thread lock *and* an exclusive
``fcntl.flock`` on the file (so several threads or several server processes are safe), and
the server acknowledges an answer only after that. A process killed mid-write can at worst
leave one incomplete last line without its newline: the next writer (and every reader)
drops such a torn tail, so earlier rows are never touched and only the unacknowledged
answer is lost.

Idempotence: an answer to a (rater, item) that is already in the file is not written again;
the store keeps the set of answered pairs, catching up with rows other processes appended.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from face2anime.core.paths import RESPONSES_FILE
from face2anime.core.params import UserError
from face2anime.survey.items import QUESTIONS, TOKEN_RE, ItemSet

FIELDS = ["time", "rater", "item", *QUESTIONS, "better"]
HEADER = ",".join(FIELDS) + "\n"
RATER_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SAME = "same"   # the pairwise answer "no difference"


class BadAnswer(Exception):
    """An answer that is refused: HTTP ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Answer:
    rater: str
    item: str
    ratings: dict[str, int]       # question -> 1..5 (rate items), {} for pair items
    better: str                   # pair items: a chosen option token, "same", or "" (skipped)

    def row(self, now: datetime | None = None) -> list[str]:
        t = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return [t, self.rater, self.item, *(str(self.ratings.get(q, "")) for q in QUESTIONS), self.better]


def validate_answer(form: Mapping[str, str], items: ItemSet) -> Answer:
    """A submitted form -> :class:`Answer`, or :class:`BadAnswer` (400 bad/missing field, 404 unknown item)."""
    def field(name: str) -> str:
        v = form.get(name)
        if v is None or not isinstance(v, str) or v.strip() == "":
            raise BadAnswer(400, f"missing field '{name}'")
        return v.strip()

    rater = field("rater")
    if not RATER_RE.match(rater):
        raise BadAnswer(400, "invalid rater id (8-64 letters, digits, '-' or '_')")
    item_id = field("item")
    if not TOKEN_RE.match(item_id):
        raise BadAnswer(400, "invalid item id (expected 16 lower-case hex characters)")
    item = items.items.get(item_id)
    if item is None:
        raise BadAnswer(404, "unknown item id (the survey items may have changed: reload the survey page)")
    if item["kind"] == "rate":
        ratings: dict[str, int] = {}
        for q in QUESTIONS:
            raw = field(q)
            if raw not in ("1", "2", "3", "4", "5"):
                raise BadAnswer(400, f"rating '{q}' must be an integer from 1 to 5, got {raw[:20]!r}")
            ratings[q] = int(raw)
        return Answer(rater, item_id, ratings, "")
    better = (form.get("better") or "").strip()          # optional: empty = skipped
    if better not in ("", SAME, *item["options"]):
        raise BadAnswer(400, "field 'better' must be one of the two pictures, 'same' or empty")
    return Answer(rater, item_id, {}, better)


def _format(row: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue().encode()


class ResponseStore:
    """Append-only, crash-safe, idempotent responses file (see the module docstring)."""

    def __init__(self, path: Path = RESPONSES_FILE):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answered: set[tuple[str, str]] = set()
        self._offset = 0            # bytes of the file already folded into _answered
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            self._catch_up(fd)

    # -- file handling (caller holds both locks) -------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The file descriptor, held under the thread lock and an exclusive flock."""
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)   # also releases the flock

    def _catch_up(self, fd: int) -> None:
        """Write the header into an empty file, drop a torn last line, fold in new rows."""
        size = os.fstat(fd).st_size
        if size == 0:
            _write_all(fd, HEADER.encode())
            os.fsync(fd)
            self._offset = len(HEADER)
            return
        if os.pread(fd, 1, size - 1) != b"\n":
            data = os.pread(fd, size, 0)
            keep = data.rfind(b"\n") + 1
            os.ftruncate(fd, keep)      # the torn tail is an answer that was never acknowledged
            os.fsync(fd)
            size = keep
        if size < self._offset:        # replaced under us: start over
            self._offset, self._answered = 0, set()
        if size > self._offset:
            chunk = os.pread(fd, size - self._offset, self._offset).decode("utf-8", "replace")
            for rec in csv.reader(io.StringIO(chunk)):
                if len(rec) == len(FIELDS) and rec[0] != "time":
                    self._answered.add((rec[1], rec[2]))
            self._offset = size

    # -- public ------------------------------------------------------------------------------
    def append(self, answer: Answer) -> bool:
        """Write ``answer`` durably; False (and nothing written) if (rater, item) was answered before."""
        line = _format(answer.row())
        with self._locked() as fd:
            self._catch_up(fd)
            if (answer.rater, answer.item) in self._answered:
                return False
            _write_all(fd, line)
            os.fsync(fd)
            self._offset += len(line)
            self._answered.add((answer.rater, answer.item))
            return True

    def answered(self, rater: str) -> set[str]:
        """Item ids ``rater`` has answered (including rows appended by other processes)."""
        with self._locked() as fd:
            self._catch_up(fd)
            return {i for r, i in self._answered if r == rater}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_responses(path: Path = RESPONSES_FILE) -> tuple[list[dict[str, str]], dict[str, int]]:
    """All complete rows of the responses file (validated) and counts of what was dropped.

    A missing or header-only file gives no rows. A torn last line (no newline: the answer in
    flight when a server was killed) is dropped and counted as ``torn``. Any other malformed
    row is a :class:`UserError` naming its line: the file is an input and must stay intact.
    """
    if not path.is_file():
        return [], {"torn": 0}
    data = path.read_bytes()
    torn = 0
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        torn = 1
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None
    reader = csv.reader(io.StringIO(text))
    out: list[dict[str, str]] = []
    for n, rec in enumerate(reader, start=1):
        if n == 1:
            if rec != FIELDS:
                raise UserError(f"{path}: line 1 must be the header {','.join(FIELDS)}")
            continue
        if len(rec) != len(FIELDS):
            raise UserError(f"{path}: line {n} has {len(rec)} fields, expected {len(FIELDS)}")
        row = dict(zip(FIELDS, rec))
        if not RATER_RE.match(row["rater"]) or not TOKEN_RE.match(row["item"]):
            raise UserError(f"{path}: line {n}: bad rater or item id")
        for q in QUESTIONS:
            if row[q] not in ("", "1", "2", "3", "4", "5"):
                raise UserError(f"{path}: line {n}: rating '{q}' = {row[q]!r} is not 1..5")
        out.append(row)
    return out, {"torn": torn}
