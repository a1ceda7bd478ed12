"""An import mapping file: the shared mapping language (decoders/mapped_json/mapping.py) plus what files need.

TOML, its top level the options (docs/IMPORT.md). Files add where the machine id comes from (a column or the
file name) and column renames. A mistake is one line naming the file and the option.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from decoders.mapped_json.mapping import MappingOptions, compile_path
from decoders.sdk import StrictOptions
from sitepulse.errors import ConfigError


class CsvOptions(StrictOptions):
    """How the CSV files are written (the first line names the columns)."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)


class FileMapping(MappingOptions):
    """A mapping for recorded files: the shared options, the machine's source, renames and CSV details."""

    machine: str = Field(description="column:NAME, file (the file name without its suffixes) or file:REGEX")
    rename: dict[str, str] = Field(default_factory=dict, description="column in the file -> name the mapping uses")
    csv: CsvOptions = Field(default_factory=CsvOptions)

    @field_validator("machine")
    @classmethod
    def _machine_source(cls, value: str) -> str:
        kind, _, where = value.partition(":")
        if kind == "column" and where or kind == "file" and not where:
            return value
        if kind == "file":
            try:
                re.compile(where)
            except re.error as exc:
                raise ValueError(f"file:REGEX: {where!r} is not a regular expression ({exc})") from None
            return value
        raise ValueError("must be column:NAME, file or file:REGEX")

    def paths(self) -> dict[str, str]:
        """Option name -> the path it reads, for every path the mapping uses (the machine column included)."""
        found = {"ts": self.ts}
        kind, _, where = self.machine.partition(":")
        if kind == "column":
            found["machine"] = where
        for name, spec in self.field_maps().items():
            found[f"fields.{name}.path"] = spec.path
        if self.position is not None:
            found["position.path"] = self.position.path
        for index, extra in enumerate(self.extra_maps()):
            found[f"extra[{index}]"] = extra.path
        return found

    def columns(self) -> dict[str, str]:
        """Column the file must have (its name in the file, before renames) -> the first option that reads it."""
        back = {new: old for old, new in self.rename.items()}
        found: dict[str, str] = {}
        for option, path in self.paths().items():
            column = str(compile_path(path)[0])
            found.setdefault(back.get(column, column), option)
        return found


def load_mapping(path: Path | str) -> tuple[FileMapping, str]:
    """The checked mapping of ``path`` and a digest of its text (a file imported with another mapping is new)."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError("--mapping", f"no such file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("--mapping", f"{path} is not valid TOML: {exc}") from None
    try:
        mapping = FileMapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError("--mapping", f"{path}: {where + ': ' if where else ''}{message}") from None
    return mapping, hashlib.sha256(text.encode()).hexdigest()[:16]
