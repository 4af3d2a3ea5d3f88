"""The docker files cannot be built here (no Docker engine); check what can go wrong in them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
DOCKER = WORKSPACE / 'docker'
DOCKERFILES = sorted(DOCKER.glob('Dockerfile.*'))
WORKSPACE_PATH = '/opt/perception_ws'


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined."""
    text = re.sub(r'\\\n', ' ', dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if ' ' in line else '') for line in lines]


def build_args(dockerfile: Path) -> dict[str, str]:
    return dict(arg.split('=', 1) for kind, arg in instructions(dockerfile) if kind == 'ARG' and '=' in arg)


def test_both_targets_exist():
    assert {p.name for p in DOCKERFILES} == {'Dockerfile.jetson', 'Dockerfile.x86'}


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_pinned_by_tag(dockerfile):
    args = build_args(dockerfile)
    froms = [arg for kind, arg in instructions(dockerfile) if kind == 'FROM']
    assert froms, f'{dockerfile} has no FROM'
    for line in froms:
        image = re.sub(r'\$\{(\w+)\}', lambda m: args[m.group(1)], line.split()[0])
        name, _, tag = image.rpartition(':')
        assert name and tag and tag != 'latest' and '/' not in tag, f'{dockerfile}: {image} is not pinned'


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=lambda p: p.name)
def test_workspace_path_entrypoint_and_copies(dockerfile):
    steps = instructions(dockerfile)
    env = ' '.join(arg for kind, arg in steps if kind == 'ENV')
    assert f'WORKSPACE={WORKSPACE_PATH}' in env
    assert ('WORKDIR', '${WORKSPACE}') in steps
    for kind, arg in steps:
        if kind == 'COPY':
            source = arg.split()[0]
            assert (WORKSPACE / source).exists(), f'{dockerfile}: COPY {source} does not exist'
    entrypoint = DOCKER / 'entrypoint.sh'
    assert ('ENTRYPOINT', '["/entrypoint.sh"]') in steps
    assert os.access(entrypoint, os.X_OK)
    assert 'env.sh' in entrypoint.read_text()
    # The image sets itself up with the same script and pins as every developer machine.
    assert any(kind == 'RUN' and 'tools/bootstrap.sh' in arg for kind, arg in steps)
    assert any(kind == 'RUN' and 'rosdep install --from-paths src' in arg for kind, arg in steps)


def test_readme_shows_the_images_paths():
    readme = (WORKSPACE / 'README.md').read_text()
    for dockerfile in DOCKERFILES:
        assert f'docker/{dockerfile.name}' in readme
    assert WORKSPACE_PATH in readme


def test_compose_builds_the_dockerfiles_with_gpu_and_shared_memory():
    compose = yaml.safe_load((DOCKER / 'compose.yaml').read_text())
    services = compose['services']
    assert set(services) == {'perception-jetson', 'perception-x86'}
    for service in services.values():
        assert (DOCKER / service['build']['context'] / service['build']['dockerfile']).resolve().is_file()
        assert service['ipc'] == 'host' and service['network_mode'] == 'host'
    assert services['perception-jetson']['runtime'] == 'nvidia'
    devices = services['perception-x86']['deploy']['resources']['reservations']['devices']
    assert devices[0]['capabilities'] == ['gpu']


def test_build_context_keeps_the_package_layout():
    """perception owns launch/, config/ and models/ (the top-level ones are links into it): the
    image needs src/ and the links in its build context."""
    ignored = {line.strip().strip('/') for line in (WORKSPACE / '.dockerignore').read_text().splitlines()
               if line.strip() and not line.startswith('#')}
    assert not ignored & {'src', 'src/perception', 'launch', 'config', 'models', 'env.sh', 'tools'}
    assert {'.venv', 'build', 'install', '.cache'} <= ignored  # host builds and caches stay out


def test_compose_mounts_the_model_bundle_where_the_package_has_it():
    compose = yaml.safe_load((DOCKER / 'compose.yaml').read_text())
    for service in compose['services'].values():
        for volume in compose['x-perception']['volumes'] + service.get('volumes', []):
            host, container = volume.split(':')[:2]
            if not container.startswith(WORKSPACE_PATH):
                continue
            assert (DOCKER / host).resolve().is_dir(), f'{host} does not exist'
            inside = WORKSPACE / Path(container).relative_to(WORKSPACE_PATH)
            # A mount onto a link would depend on how the engine resolves it: mount the real folder.
            assert inside.is_dir() and not inside.is_symlink(), f'{container} is not a real folder'
