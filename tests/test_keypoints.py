"""Keypoint schemas: every built-in one is consistent (flip pairs, names, sigmas), custom ones from config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from okspose.config import build_schema, load_config
from okspose.data.remap import joint_map
from okspose.errors import ConfigError
from okspose.keypoints import AIC14, COCO17, CROWDPOSE14, MPII16, SCHEMAS, get_schema

LOWER_BODY = ("hip", "knee", "ankle", "pelvis")  # name endings of the joints below the upper half


def mirror(name: str) -> str:
    return name.replace("left", "@").replace("right", "left").replace("@", "right")


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=list(SCHEMAS))
def test_builtin_schema_is_consistent(schema):
    k = schema.num_joints
    perm = schema.flip_index()
    np.testing.assert_array_equal(perm[perm], np.arange(k))  # flipping twice is the identity
    for i, name in enumerate(schema.joints):
        assert schema.joints[perm[i]] == mirror(name)  # left <-> right by name, centre joints stay
        if schema is not AIC14:  # AIC's sigmas were measured joint by joint, so left and right differ
            assert schema.sigmas[perm[i]] == schema.sigmas[i]
    assert len(schema.sigmas) == k and all(0 < s < 0.2 for s in schema.sigmas)
    assert {i for limb in schema.skeleton for i in limb} == set(range(k))  # every joint is drawn
    assert len({frozenset(limb) for limb in schema.skeleton}) == len(schema.skeleton)  # no limb twice
    lower = [name for i, name in enumerate(schema.joints) if i not in schema.upper_body]
    assert lower and all(name.endswith(LOWER_BODY) for name in lower), lower  # half-body crops split right
    assert not any(schema.joints[i].endswith(LOWER_BODY) for i in schema.upper_body)
    src, dst = joint_map(schema, COCO17)  # joint training matches joints by name
    assert [schema.joints[i] for i in src] == [COCO17.joints[j] for j in dst]
    assert {schema.joints[i] for i in src} == set(schema.joints) & set(COCO17.joints)
    assert get_schema(schema.name) is schema


def test_coco17_is_cocos_own_category(coco_mini):
    """Joint names and skeleton (1-based in the file) as COCO's annotation files give them."""
    category = json.loads((coco_mini / "annotations/person_keypoints_val2017.json").read_text())["categories"][0]
    assert list(COCO17.joints) == category["keypoints"]
    assert [[a + 1, b + 1] for a, b in COCO17.skeleton] == category["skeleton"]


def test_published_sigmas():
    assert (COCO17.num_joints, AIC14.num_joints, MPII16.num_joints, CROWDPOSE14.num_joints) == (17, 14, 16, 14)
    assert AIC14.sigmas[AIC14.joints.index("right_wrist")] == 0.01057665  # AI Challenger's eval (delta / 2)
    assert CROWDPOSE14.sigmas[CROWDPOSE14.joints.index("neck")] == 0.079
    coco = dict(zip(COCO17.joints, COCO17.sigmas, strict=True))
    for schema in (CROWDPOSE14, MPII16):  # limbs share COCO's falloff
        for name, s in zip(schema.joints, schema.sigmas, strict=True):
            assert name not in coco or coco[name] == s, (schema.name, name)


CUSTOM = {
    "name": "arms5",
    "joints": ["head", "left_hand", "right_hand", "left_elbow", "right_elbow"],
    "flip_pairs": [["left_hand", "right_hand"], ["left_elbow", "right_elbow"]],
    "skeleton": [["head", "left_elbow"], ["left_elbow", "left_hand"], ["head", "right_elbow"]],
    "sigmas": [0.05, 0.06, 0.06, 0.07, 0.07],
}


def config_with(tmp_path, data: dict):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return load_config(path)


def test_custom_schema_from_config(tmp_path):
    schema = build_schema(config_with(tmp_path, {"schema": "custom", "custom_schema": CUSTOM}))
    assert schema.name == "arms5" and schema.num_joints == 5
    assert schema.flip_pairs == ((1, 2), (3, 4)) and schema.skeleton == ((0, 3), (3, 1), (0, 4))
    assert schema.sigmas == (0.05, 0.06, 0.06, 0.07, 0.07)
    # overrides reach into the mapping like any other setting
    cfg = load_config(None, ["data.schema=custom", f"data.custom_schema={CUSTOM}", "data.custom_schema.name=x"])
    assert build_schema(cfg).name == "x"


@pytest.mark.parametrize("change, match", [
    ({"flip_pairs": [["left_hand", "left_foot"]]}, "flip_pairs: unknown joint 'left_foot'"),
    ({"skeleton": [["head", "neck"]]}, "skeleton: unknown joint 'neck'"),
    ({"sigmas": [0.05, 0.06]}, "needs 5 positive OKS sigmas"),
    ({"sigmas": [0.05, 0.06, 0.06, 0.07, -1]}, "needs 5 positive OKS sigmas"),
    ({"flip_pairs": [["left_hand", "right_hand"], ["left_hand", "left_elbow"]]}, "at most one flip pair"),
    ({"joints": ["a", "a", "b", "c", "d"], "flip_pairs": [], "skeleton": []}, "unique"),
    ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
])
def test_custom_schema_mistakes(tmp_path, change, match):
    cfg = config_with(tmp_path, {"schema": "custom", "custom_schema": {**CUSTOM, **change}})
    with pytest.raises(ConfigError, match=match):
        build_schema(cfg)


def test_schema_choice_mistakes(tmp_path):
    with pytest.raises(ConfigError, match="unknown keypoint schema 'coco18'"):
        build_schema(config_with(tmp_path, {"schema": "coco18"}))
    with pytest.raises(ConfigError, match="exactly when data.schema is 'custom'"):
        build_schema(config_with(tmp_path, {"schema": "custom"}))
    with pytest.raises(ConfigError, match="exactly when data.schema is 'custom'"):
        build_schema(config_with(tmp_path, {"schema": "coco17", "custom_schema": CUSTOM}))
