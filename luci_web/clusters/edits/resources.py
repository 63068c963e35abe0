"""Global resources (<rm><resources>): the pure edit functions the console's Resources tab and the API share,
the types that can be defined there, and the one way to show a resource (its type, its key — the value of the
type's primary attribute, cluster_conf.schema.RESOURCE_TYPES — and its attributes without secrets)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cluster_conf import ClusterConf, edit
from cluster_conf.model import Resource
from cluster_conf.schema import RESOURCE_TYPES, is_secret
from luci_web.clusters.edits.fence_devices import public_attrs

# Types that can be defined as global resources (service and vm are top-level, not resources).
GLOBAL_TYPES = sorted(name for name, rt in RESOURCE_TYPES.items() if not rt.top_level)

Attrs = Mapping[str, str | None]


def key_attr(rtype: str) -> str:
    """The attribute that names a resource of this type (`name` for a type the schema does not know)."""
    spec = RESOURCE_TYPES.get(rtype)
    return spec.primary if spec else "name"


def resource_dict(resource: Resource) -> dict[str, Any]:
    attrs, secrets = public_attrs(resource.attrs)
    return {"type": resource.type, "key": resource.attrs.get(key_attr(resource.type), ""),
            "key_attr": key_attr(resource.type), "known": resource.known, "attrs": attrs, "secrets_set": secrets}


# -- edit functions ------------------------------------------------------------------------------------------
def add_resource(rtype: str, attrs: Attrs) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.add_resource(conf, rtype, {k: v for k, v in attrs.items() if v is not None})
    return apply


def update_resource(rtype: str, key: str, attrs: Attrs, dropped: list[str]) -> Callable[[ClusterConf], None]:
    """Set the attributes; `dropped` are extra attributes the user deleted from the key=value lines."""
    def apply(conf: ClusterConf) -> None:
        edit.set_resource_attrs(conf, rtype, key, {**{d: None for d in dropped}, **attrs})
    return apply


def replace_resource(rtype: str, key: str, attrs: Attrs) -> Callable[[ClusterConf], None]:
    """The resource's attributes become `attrs` (its key stays): every other attribute is removed, except
    secrets, which are kept unless named (a value sets one, None removes it)."""
    def apply(conf: ClusterConf) -> None:
        element = edit.find_resource(conf, rtype, key)
        primary = key_attr(rtype)
        present = [] if element is None else [k for k in element.attrib if k != primary]
        dropped = [k for k in present if k not in attrs and not is_secret(k)]
        update_resource(rtype, key, attrs, dropped)(conf)
    return apply


def delete_resource(rtype: str, key: str) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.remove_resource(conf, rtype, key)
    return apply
