"""The fleet file: validation errors are clear and name what is wrong; GPU budgets are checked
card by card; the homelab fleet is valid and its service args are valid for each package."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingress.fleet import Fleet, FleetError, load_fleet, parse_fleet
from ingress.render_serve import render_serve_config, service_args
from ingress.services import SERVICE_KINDS

ROOT = Path(__file__).resolve().parents[1]
HOMELAB = ROOT / "fleets" / "homelab.yaml"

BASE: dict[str, Any] = {
    "name": "t",
    "groups": [
        {
            "name": "box",
            "arch": "cuda",
            "node": "box",
            "gpu_model": "RTX 2070",
            "gpus": 1,
            "gpu_memory_gb": 8,
        }
    ],
    "models": [
        {
            "name": "whisper",
            "kind": "stt",
            "group": "box",
            "gpu_fraction": 0.5,
            "memory_gb": 3.5,
            "args": {"model": "large-v3", "aliases": ["whisper-1"]},
        },
        {
            "name": "tts",
            "kind": "tts",
            "group": "box",
            "gpu_fraction": 0.5,
            "memory_gb": 3,
            "args": {"model": "coqui/XTTS-v2", "aliases": ["tts-1"]},
        },
    ],
}


def fleet_with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        target: Any = raw
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return raw


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(FleetError) as info:
        parse_fleet(raw, "test.yaml")
    return str(info.value)


def test_base_is_valid() -> None:
    fleet = parse_fleet(BASE)
    cards, unplaced = fleet.card_plan()
    assert not unplaced
    assert [m.name for m in cards[0].replicas] == ["whisper", "tts"]
    assert cards[0].fraction == pytest.approx(1.0)


def test_unknown_group() -> None:
    msg = error_of(fleet_with(models__1__group="nope"))
    assert "model 'tts': unknown group 'nope' (groups: box)" in msg


def test_duplicate_route() -> None:
    msg = error_of(fleet_with(models__1__route="/whisper"))
    assert "route /whisper used by both 'whisper' and 'tts'" in msg


def test_duplicate_service_name() -> None:
    raw = fleet_with(models__1__name="whisper", models__1__route="/tts")
    assert "duplicate model service name 'whisper'" in error_of(raw)


def test_duplicate_served_name_across_services() -> None:
    raw = fleet_with(models__1__args={"model": "coqui/XTTS-v2", "aliases": ["whisper-1"]})
    assert "model name 'whisper-1' served by both 'whisper' and 'tts'" in error_of(raw)


def test_duplicate_group() -> None:
    raw = copy.deepcopy(BASE)
    raw["groups"].append(copy.deepcopy(raw["groups"][0]))
    assert "duplicate worker group name 'box'" in error_of(raw)


def test_gpu_fractions_over_one_on_a_card() -> None:
    msg = error_of(fleet_with(models__1__gpu_fraction=0.6))
    assert "group 'box' (1 x RTX 2070, 8 GB): GPU fractions do not fit" in msg
    assert "whisper 0.5, tts 0.6 (total 1.1)" in msg
    assert "no card left for whisper" in msg


def test_fractions_are_packed_per_card_not_summed() -> None:
    """3 x 0.6 on 2 cards sums to 1.8 <= 2, but a fractional replica sits on one card."""
    raw = fleet_with(groups__0__gpus=2, models__0__gpu_fraction=0.6, models__0__replicas=3)
    raw["models"][0]["memory_gb"] = None
    raw["models"].pop(1)
    msg = error_of(raw)
    assert "GPU fractions do not fit on its card(s): whisper 0.6 x3 (total 1.8)" in msg


def test_autoscaling_max_replicas_count() -> None:
    raw = fleet_with(models__0__autoscaling={"min_replicas": 1, "max_replicas": 2})
    assert "GPU fractions do not fit" in error_of(raw)


def test_memory_that_does_not_fit_the_card_names_card_and_models() -> None:
    msg = error_of(fleet_with(models__0__memory_gb=5, models__1__memory_gb=4))
    assert (
        "card 0 of group 'box' on box (RTX 2070, 8 GB) cannot fit whisper (~5 GB) + tts (~4 GB) "
        "= ~9 GB in 8 GB" in msg
    )
    assert "model 'whisper' needs ~5 GB but its budget on card 0 of group 'box'" in msg
    assert "is 4 GB (0.5 x 8 GB)" in msg


def test_memory_over_a_models_share() -> None:
    msg = error_of(fleet_with(models__0__memory_gb=4.5, models__1__memory_gb=1))
    assert "model 'whisper' needs ~4.5 GB but its budget" in msg
    assert "cannot fit" not in msg  # 5.5 GB fits the card; the share is what fails


def test_memory_needs_card_memory() -> None:
    raw = fleet_with()
    del raw["groups"][0]["gpu_memory_gb"]
    msg = error_of(raw)
    assert "model 'whisper' declares memory_gb but group 'box' has no gpu_memory_gb" in msg


def test_gpu_without_group_and_on_cpu_group() -> None:
    raw = fleet_with(models__0__group=None)
    assert "model 'whisper' asks for a GPU fraction but names no group" in error_of(raw)
    raw = fleet_with(groups__0__gpus=0)
    raw["groups"][0].pop("gpu_memory_gb")
    for m in raw["models"]:
        m.pop("memory_gb")
    assert "asks for a GPU on CPU-only group 'box'" in error_of(raw)


def test_cpu_arch_declares_no_gpus() -> None:
    raw = fleet_with(groups__0__arch="cpu")
    assert "arch cpu cannot declare gpus" in error_of(raw)


def test_names_are_dns_labels() -> None:
    msg = error_of(fleet_with(models__0__name="Whisper_1"))
    assert "model name 'Whisper_1' must be a DNS label" in msg
    assert "models.0.name" in msg
    assert "group name '1box'" in error_of(fleet_with(groups__0__name="1box"))
    assert "'gateway' is reserved" in error_of(fleet_with(models__0__name="gateway"))


def test_labels_and_env_are_checked() -> None:
    msg = error_of(fleet_with(groups__0__labels={"gpu model": "RTX 2070"}))
    assert "label key 'gpu model'" in msg and "label gpu model='RTX 2070'" in msg
    assert "reserved by Ray" in error_of(fleet_with(groups__0__labels={"ray.io/x": "y"}))
    assert "not environment variable names" in error_of(fleet_with(groups__0__env={"A-B": "1"}))


def test_unknown_field_and_kind() -> None:
    assert "models.0.gpu: Extra inputs are not permitted" in error_of(fleet_with(models__0__gpu=1))
    assert "unknown kind 'vision'" in error_of(fleet_with(models__0__kind="vision"))


def test_every_problem_is_listed_on_its_own_line(tmp_path: Path) -> None:
    raw = fleet_with(models__1__group="nope", models__1__route="/whisper")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: invalid fleet file:"
    assert any(line.startswith("  - route /whisper used by both") for line in lines)
    assert any(line.startswith("  - model 'tts': unknown group") for line in lines)


def test_cli_reports_errors_and_budgets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(fleet_with(models__1__gpu_fraction=0.7)))
    cli = [sys.executable, "-m", "ingress.cli"]
    proc = subprocess.run([*cli, "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "GPU fractions do not fit" in proc.stderr
    proc = subprocess.run([*cli, "validate", str(HOMELAB)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "whisper 0.5 ~3.5/4 GB, tts 0.5 ~3/4 GB -> 1 GPU, ~6.5/8 GB" in proc.stdout


# ---- the homelab fleet -------------------------------------------------------------------


@pytest.fixture(scope="module")
def homelab() -> Fleet:
    return load_fleet(HOMELAB)


def test_homelab_is_the_design_table(homelab: Fleet) -> None:
    table = {m.name: (m.route, m.group, homelab.arch_of(m), m.gpu_fraction) for m in homelab.models}
    assert table == {
        "llm": ("/llm", "khelben", "rocm", 0.95),
        "whisper": ("/whisper", "elminster", "cuda", 0.5),
        "tts": ("/tts", "elminster", "cuda", 0.5),
        "embeddings": ("/embeddings", "drizzt", "rocm", 0.8),
        "reranker": ("/reranker", "danilo", "xpu", 0.8),
    }
    assert homelab.group("drizzt").env["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"  # type: ignore[union-attr]
    assert homelab.cluster.namespace == "ai-ml"
    assert homelab.cluster.service_name == "ai-inference-serve-svc"
    routes = homelab.routing_table()
    for alias in ("whisper-1", "tts-1", "text-embedding-3-small"):
        assert alias in routes


def test_homelab_cards_fit(homelab: Fleet) -> None:
    cards, unplaced = homelab.card_plan()
    assert not unplaced
    elminster = next(c for c in cards if c.group.name == "elminster")
    assert sorted(m.name for m in elminster.replicas) == ["tts", "whisper"]
    for card in cards:
        assert card.fraction <= 1
        assert card.memory_gb <= (card.group.gpu_memory_gb or 0)


CONFIG_CLASSES = {
    "llm": "llm_serve.config:LLMConfig",
    "stt": "stt_serve.config:SttConfig",
    "tts": "tts_serve.config:TTSConfig",
    "embeddings": "embed_serve.config:EmbeddingConfig",
    "reranker": "rerank_serve.config:RerankConfig",
}


@pytest.mark.parametrize("name", ["llm", "whisper", "tts", "embeddings", "reranker"])
def test_homelab_args_are_valid_service_configs(homelab: Fleet, name: str) -> None:
    """The args the fleet renders (with device, gpu_memory_fraction, api_keys_env added) are
    accepted by the package's own config class: no misspelled option reaches a replica."""
    m = homelab.model(name)
    assert m is not None
    module, _, cls = CONFIG_CLASSES[m.kind].partition(":")
    config_cls = getattr(importlib.import_module(module), cls)
    args = service_args(homelab, m)
    config = config_cls.model_validate(args)
    assert config.gpu_memory_fraction == m.gpu_fraction
    assert config.device == {"cuda": "cuda", "rocm": "rocm", "xpu": "xpu"}[homelab.arch_of(m)]
    assert config.api_keys_env == "AI_API_KEYS"
    assert set(m.model_names) == set(config.names)


def test_render_serve_config_places_every_model(homelab: Fleet) -> None:
    config = render_serve_config(homelab)
    apps = {a["name"]: a for a in config["applications"]}
    for m in homelab.models:
        opts = apps[m.name]["deployments"][0]["ray_actor_options"]
        group = homelab.group(m.group)
        assert group is not None
        assert opts["num_gpus"] == m.gpu_fraction  # num_gpus sets the visible-devices variable
        assert set(opts["resources"]) == {group.resource}
        assert apps[m.name]["import_path"] == SERVICE_KINDS[m.kind].import_path
    drizzt = apps["embeddings"]["deployments"][0]["ray_actor_options"]
    assert drizzt["runtime_env"]["env_vars"]["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"
