"""A service's ``sample.yaml``: every setting with its default and its description as a comment.

Operators copy it to see what can be set per site; a test checks each service's file still loads and equals
its settings model's defaults, and ``sitepulse services sample-config NAME`` writes it again after a change.
"""

from __future__ import annotations

import json
import textwrap

import yaml
from pydantic import BaseModel

from sitepulse.errors import SitePulseError

WIDTH = 120


def sample_config(settings: BaseModel) -> str:
    """The YAML of ``settings`` (a model with the defaults), each key under its field description."""
    header = f"# {type(settings).__name__}: per-site settings and their defaults; leave out any you don't change.\n"
    return header + "".join(_lines(settings, indent=""))


def _lines(settings: BaseModel, indent: str) -> list[str]:
    lines = []
    for name, field in type(settings).model_fields.items():
        width = max(40, WIDTH - len(indent) - 2)
        for text in textwrap.wrap(field.description or name.replace("_", " "), width):
            lines.append(f"{indent}# {text}\n")
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:\n")
            lines += _lines(value, indent + "  ")
        else:
            lines.append(f"{indent}{name}: {json.dumps(value)}\n")  # JSON is YAML: numbers, null, {}, "text"
    return lines


def load_sample(text: str, model: type[BaseModel]) -> BaseModel:
    """The settings a sample file sets, validated by the service's model (a mistake is one clear line)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SitePulseError(f"sample config is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SitePulseError("sample config must be a mapping of setting names to values")
    return model.model_validate(data)

