"""Load and validate the deployment YAML (config/jetson_deployment.yaml).

Every key is checked against the node's parameter table (``perception_core.params``), the
single source of names, types, ranges and choices; this module only walks the YAML and names the
file and the full key path (``deployment_config.safety.max_inference_time``) in every error.
Keys the YAML leaves out take the table's defaults, exactly as the node would.

``model.path`` is resolved here, once, so the node always sees an absolute path: ``package://PKG/rel``
through the ament index, absolute as it is, anything else relative to the YAML's directory. The
output paths (``perception_core.params.INSTANCE_PATHS``) keep their ``{node}`` placeholders: only
the node knows its fully qualified name (``-r __node:=``, namespaces), so it fills them in at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from perception_core.params import PARAMETERS, ParameterError, ParameterValue, check_values

ROOT_KEY = 'deployment_config'
PACKAGE_SCHEME = 'package://'


class ConfigError(ValueError):
    """A deployment YAML that cannot be used; the message starts with the file and the key path."""


@dataclass(frozen=True)
class DeploymentConfig:
    """A validated deployment YAML: every parameter by dotted name, model.path made absolute."""

    source: Path
    values: dict[str, ParameterValue]

    def __getitem__(self, name: str) -> ParameterValue:
        return self.values[name]

    @property
    def node_name(self) -> str:
        return str(self.values['ros_integration.node_name'])

    def nested(self) -> dict[str, Any]:
        """The values as the YAML's nested sections (what ROS 2 flattens back into dotted names)."""
        tree: dict[str, Any] = {}
        for name, value in self.values.items():
            *sections, leaf = name.split('.')
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
        return tree


def _sections() -> set[str]:
    """Every dotted prefix that is a section (a mapping) rather than a parameter."""
    return {'.'.join(p.name.split('.')[:i]) for p in PARAMETERS for i in range(1, p.name.count('.') + 1)}


def _flatten(tree: dict, prefix: str, sections: set[str], where: str) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ConfigError(f'{where}: {ROOT_KEY}.{prefix}{key!r}: keys must be strings')
        name = prefix + key
        if name in sections:
            if not isinstance(value, dict):
                raise ConfigError(f'{where}: {ROOT_KEY}.{name}: expected a mapping (section), '
                                  f'got {type(value).__name__} {value!r}')
            flat.update(_flatten(value, name + '.', sections, where))
        else:
            flat[name] = value
    return flat


def resolve_model_path(value: str, base_dir: Path) -> Path:
    """An absolute path for ``model.path``: package://PKG/rel, absolute, or relative to base_dir."""
    if value.startswith(PACKAGE_SCHEME):
        package, _, relative = value[len(PACKAGE_SCHEME):].partition('/')
        if not package or not relative:
            raise ValueError(f'{value!r} is not package://PACKAGE/relative/path')
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            share = get_package_share_directory(package)
        except (PackageNotFoundError, OSError) as exc:  # OSError: no AMENT_PREFIX_PATH at all
            raise ValueError(f'{value!r}: package {package!r} is not in the ament index '
                             '(source install/setup.bash or env.sh, or give a file path)') from exc
        return Path(share) / relative
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def validate(document: object, source: Path, model_override: str | None = None) -> DeploymentConfig:
    """Check a parsed YAML document; ``source`` names it in errors and anchors relative paths.

    ``model_override`` (the launch file's ``model:=``) replaces model.path; a relative one is taken
    from the current directory, as any path typed on a command line.
    """
    where = str(source)
    if not isinstance(document, dict) or ROOT_KEY not in document:
        raise ConfigError(f'{where}: expected a mapping with the single top-level key {ROOT_KEY!r}, '
                          f'got {type(document).__name__}')
    extra = sorted(str(k) for k in document if k != ROOT_KEY)
    if extra:
        raise ConfigError(f'{where}: {extra[0]}: unknown top-level key (only {ROOT_KEY!r} is allowed)')
    tree = document[ROOT_KEY]
    if not isinstance(tree, dict):
        raise ConfigError(f'{where}: {ROOT_KEY}: expected a mapping, got {type(tree).__name__}')
    flat = _flatten(tree, '', _sections(), where)
    try:
        values = check_values(flat)
    except ParameterError as exc:
        raise ConfigError(f'{where}: {ROOT_KEY}.{exc}') from exc
    for name, value in values.items():
        if value == []:
            # A ROS 2 params file cannot type an empty list: the node would refuse the whole file.
            raise ConfigError(f'{where}: {ROOT_KEY}.{name}: must not be empty (an empty list has no '
                              'ROS 2 parameter type); leave the key out to use its default')
    model, base = ((model_override, Path.cwd()) if model_override
                   else (str(values['model.path']), source.parent))
    try:
        values['model.path'] = str(resolve_model_path(model, base))
    except ValueError as exc:
        key = 'model:= (launch argument)' if model_override else f'{ROOT_KEY}.model.path'
        raise ConfigError(f'{where}: {key}: {exc}') from exc
    return DeploymentConfig(source=source, values=values)


def load_config(path: str | Path, model_override: str | None = None) -> DeploymentConfig:
    """Read and validate a deployment YAML file."""
    source = Path(path).expanduser().resolve()
    try:
        text = source.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f'{source}: cannot read the deployment YAML: {exc}') from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = f':{mark.line + 1}' if mark is not None else ''
        raise ConfigError(f'{source}{line}: not valid YAML: {exc}') from exc
    return validate(document, source, model_override)
