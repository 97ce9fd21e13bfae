"""Where data, caches, artifacts and figures live.

Every location can be overridden with an environment variable, so tests, CI and Colab can
point the course somewhere else without touching code. `<home>` is `C3AE_HOME` when set (on
Colab, `colab.setup()` points it at a Drive folder, so every notebook's outputs outlive the
runtime), otherwise the repository root:

| function          | variable              | default                    |
| ----------------- | --------------------- | -------------------------- |
| `course_home()`   | `C3AE_HOME`           | `<repo>`                   |
| `raw_dir()`       | `C3AE_DATA_DIR`       | `<home>/data/raw`          |
| `download_dir()`  | `C3AE_DOWNLOAD_DIR`   | `<home>/data/downloads`    |
| `cache_dir()`     | `C3AE_CACHE_DIR`      | `<home>/data/cache`        |
| `artifacts_dir()` | `C3AE_ARTIFACTS_DIR`  | `<home>/artifacts`         |
| `figures_dir()`   | `C3AE_FIGURES_DIR`    | `<home>/figures/generated` |
| `mirror_dir()`    | `C3AE_DATA_MIRROR`    | none (use the network)     |
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; `hold_lock` then holds nothing
    fcntl = None

logger = logging.getLogger(__name__)


def repo_root() -> Path:
    """The course repository root (editable install), or the working directory otherwise."""
    candidate = Path(__file__).resolve().parents[1]
    if (candidate / "pyproject.toml").exists() and (candidate / "notebooks").is_dir():
        return candidate
    return Path.cwd()


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    path = Path(value).expanduser() if value else default
    return path.resolve()


def course_home() -> Path:
    """The folder everything of the course lives under (`C3AE_HOME`, else the repository root)."""
    return _from_env("C3AE_HOME", repo_root())


def raw_dir() -> Path:
    """Folder that holds extracted datasets (`<raw_dir>/<dataset>/...`)."""
    return _from_env("C3AE_DATA_DIR", course_home() / "data" / "raw")


def download_dir() -> Path:
    """Folder that holds downloaded archives before extraction."""
    return _from_env("C3AE_DOWNLOAD_DIR", course_home() / "data" / "downloads")


def cache_dir() -> Path:
    """Folder that holds preprocessed face caches (`<cache_dir>/<name>/`)."""
    return _from_env("C3AE_CACHE_DIR", course_home() / "data" / "cache")


def artifacts_dir() -> Path:
    """Folder for everything a run produces: metadata tables, models, metrics, notebooks."""
    return _from_env("C3AE_ARTIFACTS_DIR", course_home() / "artifacts")


def figures_dir() -> Path:
    """Folder where `plotting.save_figure` writes generated figures."""
    return _from_env("C3AE_FIGURES_DIR", course_home() / "figures" / "generated")


def mirror_dir() -> Path | None:
    """Offline mirror folder laid out like `shared/data` (`C3AE_DATA_MIRROR`), or None."""
    value = os.environ.get("C3AE_DATA_MIRROR")
    return Path(value).expanduser().resolve() if value else None


def metadata_path(dataset: str) -> Path:
    """Where notebook 01 writes the tidy metadata table of `dataset` (parquet)."""
    return artifacts_dir() / "metadata" / f"{dataset}.parquet"


def runs_dir() -> Path:
    """Folder holding one sub-folder per training run."""
    return artifacts_dir() / "runs"


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(target: Path, write: Callable[[Path], object]) -> Path:
    """Write `target` all at once: `write(temporary)` then `os.replace`; return `target`.

    The temporary file sits beside `target` (same file system, so the replace is atomic) and
    keeps its suffix (`best.tmp-123.keras`), which Keras and NumPy need to pick the format.
    A crash never leaves half a `target`; the temporary file is removed on failure.
    """
    target = Path(target)
    temporary = target.with_name(f"{target.stem}.tmp-{os.getpid()}{target.suffix}")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


class Locked(OSError):
    """What `hold_lock` raises when another holder has the lock: one line naming its PID."""


@contextmanager
def hold_lock(path: Path, what: str, advice: str = "wait for it to end, or stop it") -> Iterator[None]:
    """Hold the OS lock of the file `path` (created, with its folder, if needed) for a `with` block.

    `fcntl.flock`: the system releases it when its holder ends in any way (killed included), so
    a lock never outlives its process. While held, the file names the holder's PID. Another
    holder (another process, or another `hold_lock` of this one) is refused at once with
    `Locked`: "`what` is in use by process PID ...; `advice`." The file itself is never deleted
    (two processes could then each lock a file of that name). Where the file system cannot lock
    (or on Windows) the block runs unlocked, with a warning.
    """
    path = Path(path)
    ensure_dir(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_lock(descriptor, path):
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
        else:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise Locked(f"{what} is in use by {who} (which holds {path}); {advice}.")
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)  # still held: nobody reads a stale PID
    finally:
        os.close(descriptor)  # closing releases the lock


def _try_lock(descriptor: int, path: Path) -> bool:
    """Take the exclusive flock of `descriptor` without waiting: False when another holds it;
    True when taken, or when the file system (or Windows) cannot lock (a warning says so)."""
    if fcntl is None:
        logger.warning("No file locks on this system: nothing stops a second process using %s.", path.parent)
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:  # e.g. ENOLCK on a network file system
        logger.warning("Cannot lock %s (%s): nothing stops a second process using %s.", path, error, path.parent)
    return True


def write_text_atomic(target: Path, text: str) -> Path:
    """`atomic_write` of a text file (UTF-8)."""
    return atomic_write(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def settings_tag(settings: Any, ignore: Iterable[str] = ()) -> str:
    """A short stable tag (6 hex digits) of the fields of dataclass `settings` that differ from
    its class's defaults (fields in `ignore` left out), or "" when none differs.

    Runs and caches built with non-default settings get this tag in their names, so that
    changing a setting never reuses (or collides with) what other settings produced.
    """
    defaults = dataclasses.asdict(type(settings)())
    changed = {key: value for key, value in dataclasses.asdict(settings).items()
               if key not in ignore and value != defaults[key]}
    if not changed:
        return ""
    text = json.dumps(dict(sorted(changed.items())), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def metrics_path(name: str) -> Path:
    """Where a notebook records what it measured (`course.record(name, ...)`): JSON."""
    return artifacts_dir() / "metrics" / f"{name}.json"


def write_json(target: Path, values: Mapping[str, Any], allow_nan: bool = True) -> Path:
    """`atomic_write` of `values` as indented JSON; NumPy values, paths, tables and dataclasses
    are written in their plain JSON form (`_json_value`). `allow_nan=False`: ValueError on NaN."""
    text = json.dumps(values, indent=2, default=_json_value, allow_nan=allow_nan) + "\n"
    return write_text_atomic(target, text)


def read_json(path: Path, keys: Sequence[str] = (), fix: str = "", missing_ok: bool = False) -> dict[str, Any]:
    """The JSON object in `path`. ValueError naming the file (and `fix`, what to do) when it is
    missing (unless `missing_ok`: then {}), not JSON, not an object, or lacks one of `keys`."""
    advice = f"; {fix}" if fix else ""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ValueError(f"{path} is missing{advice}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}){advice}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds {type(values).__name__}, not a JSON object{advice}")
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"{path} lacks {missing}{advice}")
    return values


def _json_value(value: Any) -> Any:
    """The plain JSON form of a value `json` cannot write itself."""
    if hasattr(value, "to_dict"):  # pandas tables and series: {index: value}
        return value.to_dict()
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):  # e.g. a TensorShape
        return list(value)
    raise TypeError(f"Cannot write {type(value).__name__} as JSON.")
