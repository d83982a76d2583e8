"""The one loader of settings in layers: defaults, then a preset, then a YAML file, then the flags.

Each layer is checked on its own (keys and types, named as that layer spells them), the layers are merged
key by key (a later layer wins), and the config is built once from the result, so no intermediate mix of
two layers is ever checked. The loader remembers which layer set each option: an error names the option as
its user wrote it (`run.yaml: filter.size`, `--size`), and two options the user wrote that cancel each other
(one makes the other pointless) are refused, naming both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from deita.config import checked_mapping, config_from_mapping, is_config
from deita.errors import ConfigError, quote

C = TypeVar("C")


def _dotted(path: str) -> str:
    return path


@dataclasses.dataclass(frozen=True)
class Layer:
    """One source of settings: a nested mapping of option names, where it came from, how it names them.

    `source` prefixes its errors (a file, `preset offline`; empty for flags, which name themselves);
    `label` turns a dotted option path into what the user wrote (a flag, a key path); `user` is False for
    the layers deita supplies (a preset), which never count as written by the user.
    """

    source: str
    values: Mapping[str, Any]
    label: Callable[[str], str] = _dotted
    user: bool = True


@dataclasses.dataclass
class Layered:
    """The merged settings of several layers, and which layer set each leaf option. `default_label` names
    an option no layer set (the command's flag for it, on the command line)."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: dict[str, Layer] = dataclasses.field(default_factory=dict)
    default_label: Callable[[str], str] = _dotted

    def add(self, cls: type, layer: Layer) -> None:
        """Check `layer` against config `cls` and merge it over what is there."""
        try:
            checked = checked_mapping(cls, layer.values)
        except ConfigError as err:
            raise err.located(layer.source, layer.label) from None
        _merge(self.values, checked, layer, self.origin, "")

    def user_wrote(self, path: str) -> bool:
        """Whether a user's layer set `path` (a leaf, or any leaf under a section)."""
        return any(layer.user and (name == path or name.startswith(path + "."))
                   for name, layer in self.origin.items())

    def locate(self, err: ConfigError) -> ConfigError:
        """`err` rendered for the layer that set its first field, each field named as its layer spells it."""
        layer = next((self.origin[path] for path in err.fields if path in self.origin), None)
        where = layer.source if layer is not None else ""
        return err.located(where, lambda path: (self.origin[path].label if path in self.origin
                                                else self.default_label)(path))

    def build(self, cls: type[C], base: C | None = None) -> C:
        """The config of the merged settings (on `base`, else the defaults), built and checked once."""
        try:
            config = config_from_mapping(cls, self.values, base=base)
        except ConfigError as err:
            raise self.locate(err) from None
        self.refuse_contradictions(config)
        return config

    def refuse_contradictions(self, config: Any, prefix: str = "") -> None:
        """Refuse an option the user wrote that another option the user wrote makes pointless, naming both.
        A flag that sets several options (one per backend) counts when any of them has an effect."""
        ignored = _ignored(config, prefix)
        written = [path for path, layer in self.origin.items() if layer.user]
        for path in written:
            reason = next((by for section, by in ignored.items()
                           if path == section or path.startswith(section + ".")), None)
            if reason is None or not self.user_wrote(reason):
                continue
            layer = self.origin[path]
            siblings = [p for p in written if self.origin[p] is layer and layer.label(p) == layer.label(path)]
            if any(not any(p == s or p.startswith(s + ".") for s in ignored) for p in siblings):
                continue
            value, by_value = _get(config, path), _get(config, reason)
            name, by = path.rpartition(".")[2], reason.rpartition(".")[2]
            raise self.locate(ConfigError(f"{name} ({quote(value)}) has no effect with {by} {quote(by_value)}; "
                                          "drop one of them", [path, reason], rule=True))


def _ignored(config: Any, prefix: str) -> dict[str, str]:
    """Every (nested) config's `ignored_options`, as full dotted paths."""
    out = {f"{prefix}{name}": f"{prefix}{by}" for name, by in getattr(config, "ignored_options", dict)().items()}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            out.update(_ignored(value, f"{prefix}{f.name}."))
    return out


def _get(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def _merge(into: dict[str, Any], values: Mapping[str, Any], layer: Layer, origin: dict[str, Layer],
           prefix: str) -> None:
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            _merge(into.setdefault(name, {}), value, layer, origin, path + ".")
            if not value:
                origin.setdefault(path, layer)  # an empty section was still written
        else:
            into[name] = value
            origin[path] = layer


def build_layered(cls: type[C], layers: Sequence[Layer], base: C | None = None) -> C:
    """Config `cls` from `layers` merged in order (later wins) over `base` or the defaults; see `Layered`."""
    merged = Layered(default_label=layers[-1].label if layers else _dotted)
    for layer in layers:
        merged.add(cls, layer)
    return merged.build(cls, base)
