"""Step image names, from ``images/images.yaml`` (the one source shared with the Dockerfiles).

Each key is a directory ``images/<key>/`` with a Dockerfile; its image is
``<registry>/tenant-dr-<key>:<tag>`` (registry and tag from the tenant config) and it runs the step
modules listed under ``modules``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from workflows.config import TenantConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
IMAGE_PREFIX = "tenant-dr-"
_REF_RE = re.compile(r"^(?P<registry>.+)/tenant-dr-(?P<key>[a-z0-9][a-z0-9-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)$")


class ImagesError(Exception):
    """``images/images.yaml`` is missing or malformed, or a module has no image."""


@dataclass(frozen=True)
class ImageCatalog:
    """Which image (key) runs which step module."""

    module_to_key: dict[str, str]

    def key_for(self, module: str) -> str:
        """The image key whose image runs ``python -m steps.<module>``."""
        try:
            return self.module_to_key[module]
        except KeyError:
            raise ImagesError(f"step module {module!r} is not listed under any image in images/images.yaml") from None


@cache
def load_images(images_dir: Path = IMAGES_DIR) -> ImageCatalog:
    """Read ``<images_dir>/images.yaml``; :class:`ImagesError` on a missing file or bad shape."""
    path = images_dir / "images.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImagesError(f"{path}: cannot read: {exc.strerror}") from exc
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict) or not images:
        raise ImagesError(f"{path}: expected a mapping 'images: {{<key>: {{modules: [...]}}}}'")
    mapping: dict[str, str] = {}
    for key, spec in images.items():
        modules = spec.get("modules") if isinstance(spec, dict) else None
        if not isinstance(modules, list):
            raise ImagesError(f"{path}: images.{key}.modules must be a list of step modules")
        for module in modules:
            if module in mapping:
                raise ImagesError(f"{path}: module {module!r} is listed under both {mapping[module]!r} and {key!r}")
            mapping[str(module)] = str(key)
    return ImageCatalog(mapping)


def image_ref(config: TenantConfig, key: str) -> str:
    """``<registry>/tenant-dr-<key>:<tag>``."""
    return f"{config.images.registry}/{IMAGE_PREFIX}{key}:{config.images.tag}"


def image_for_module(config: TenantConfig, module: str) -> str:
    """The image that runs ``python -m steps.<module>``."""
    return image_ref(config, load_images().key_for(module))


def image_key(ref: str) -> str | None:
    """The key of a ``<registry>/tenant-dr-<key>:<tag>`` reference, or ``None`` if it is not one of ours."""
    match = _REF_RE.match(ref)
    return match.group("key") if match else None
