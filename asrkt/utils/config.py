"""Typed YAML configs: defaults < ``--config file`` < ``--key value`` on the command line.

A config is a (possibly nested) dataclass. Unknown keys, in a file or on the command line, are
errors that name the file and the key. Nested fields are addressed with dots: ``--model.hidden 256``
(dashes and underscores are interchangeable: ``--model.num-layers 3``).

Config files compose: a top-level ``include: other.yaml`` (or a list of files) is resolved relative to the
including file and merged under it, recursively (mappings merge key by key, anything else is replaced), so
the including file wins, and a later include wins over an earlier one. A missing included file or an include
cycle is an error naming the files. Four student configs can thus share one ``student_model.yaml``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import typing
from pathlib import Path

import yaml

from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.errors import AsrktError


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value, tp, key: str, source: str):
    """Check ``value`` against the annotated type ``tp``; convert ints to floats where a float is wanted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except AsrktError:
                pass
        raise AsrktError(f"{source}: '{key}' must be {tp}, got {value!r}")
    if tp is typing.Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise AsrktError(f"{source}: '{key}' must be a list, got {value!r}")
        inner = args[0] if args else typing.Any
        return [_coerce(v, inner, key, source) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise AsrktError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise AsrktError(f"{source}: '{key}' must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise AsrktError(f"{source}: '{key}' must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise AsrktError(f"{source}: '{key}' must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise AsrktError(f"{source}: '{key}' must be a string, got {value!r}")
    return value


def _apply(cfg, mapping: dict, source: str, prefix: str = ""):
    """Return a copy of dataclass ``cfg`` with ``mapping`` applied; reject unknown keys."""
    hints = _hints(type(cfg))
    changes = {}
    for raw_key, value in mapping.items():
        key = str(raw_key).replace("-", "_")
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise AsrktError(f"{source}: unknown config key '{prefix}{raw_key}' (known: {known})")
        tp = hints[key]
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                raise AsrktError(f"{source}: '{prefix}{key}' must be a mapping, got {value!r}")
            changes[key] = _apply(getattr(cfg, key), value, source, prefix=f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, tp, prefix + key, source)
    return dataclasses.replace(cfg, **changes)


def _nest(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def config_hash(cfg) -> str:
    """A short stable hash of the resolved config (key order independent)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AsrktError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise AsrktError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise AsrktError(f"{path}: a config must be a mapping of keys to values")
    return data


INCLUDE_KEY = "include"


def merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: nested mappings merged key by key, any other value of ``top`` replaces ``base``'s."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config_file(path, _stack: tuple = ()) -> dict:
    """A YAML config with its ``include:`` files merged in (see the module docstring)."""
    path = Path(path)
    here = path.resolve()
    if here in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, here))
        raise AsrktError(f"{path}: include cycle: {chain}")
    if _stack and not path.is_file():
        raise AsrktError(f"{_stack[-1]}: included config file {path} not found")
    data = load_yaml(path)
    includes = data.pop(INCLUDE_KEY, None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise AsrktError(f"{path}: '{INCLUDE_KEY}' must be a file name or a list of file names, got {includes!r}")
    base: dict = {}
    for inc in includes:
        base = merge(base, load_config_file(path.parent / inc, (*_stack, here)))
    return merge(base, data)


def resolve(cls_or_cfg, config_path=None, overrides: dict | None = None):
    """Build a config: dataclass defaults, then the YAML file, then ``overrides`` (dotted keys allowed)."""
    cfg = cls_or_cfg() if isinstance(cls_or_cfg, type) else cls_or_cfg
    if config_path:
        cfg = _apply(cfg, load_config_file(config_path), str(config_path))
    if overrides:
        cfg = _apply(cfg, _nest(overrides), "command line")
    return cfg


def from_dict(cls, data: dict, source: str = "saved config"):
    return _apply(cls(), data, source)


def save_config(cfg, path) -> None:
    atomic_write_text(path, to_yaml(cfg))


def diff(a, b, prefix: str = "") -> list[str]:
    """Human-readable differences between two configs of the same class."""
    da, db = (to_dict(a), to_dict(b)) if dataclasses.is_dataclass(a) else (a, b)
    out = []
    for key in sorted(set(da) | set(db)):
        va, vb = da.get(key), db.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff(va, vb, prefix=f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def check_same_config(saved_path, cfg, ignore: typing.Iterable[str] = ()) -> None:
    """Refuse to resume when the config saved in an exp folder differs from the current one."""
    saved = from_dict(type(cfg), load_yaml(saved_path), str(saved_path))
    ignore = set(ignore)
    changes = [d for d in diff(saved, cfg) if d.split(":")[0] not in ignore]
    if changes:
        raise AsrktError(f"{saved_path}: the saved config differs from the current one; rerun with "
                         f"--overwrite true or restore the config. Differences: {'; '.join(changes)}")


def _flatten_fields(cls, prefix: str = ""):
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_dataclass_type(tp):
            yield from _flatten_fields(tp, prefix=f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, tp


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Add ``--config``, ``--print-config`` and one ``--key`` option per config field to ``parser``."""
    parser.add_argument("--config", default=None, help="YAML config (overridden by --key value options)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    group = parser.add_argument_group(f"{cls.__name__} keys (defaults < --config < command line)")
    for name, f, tp in _flatten_fields(cls):
        dest = "cfg__" + name.replace(".", "__")
        default = f.default if f.default is not dataclasses.MISSING else "(factory)"
        opts = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        group.add_argument(*opts, dest=dest, default=None, metavar="V",
                           help=f"{getattr(tp, '__name__', tp)}, default {default!r}")


def config_from_args(args: argparse.Namespace, cls):
    """Resolve the config from parsed arguments; print it and exit if ``--print-config`` was given."""
    overrides = {}
    for dest, value in vars(args).items():
        if dest.startswith("cfg__") and value is not None:
            overrides[dest[5:].replace("__", ".")] = yaml.safe_load(value) if value != "" else ""
    cfg = resolve(cls, args.config, overrides)
    if getattr(args, "print_config", False):
        print(to_yaml(cfg), end="")
        raise SystemExit(0)
    return cfg
