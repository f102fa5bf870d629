"""Settings: the one place that reads the environment, and the one ``for_profile``.

:func:`settings` reads every ``ECGKIT_*`` variable (and ``HF_HUB_OFFLINE``) into a frozen
:class:`Settings`; nothing else in the package reads ``os.environ`` (the command-line entry points
and the tests aside). It is read afresh on each call (a dictionary look-up per variable), so a
variable set by a test or by ``ecgkit.reproduce`` is seen at once. :data:`ENVIRONMENT` documents
each variable; the README's settings table lists the same ones (a test compares them).

:class:`ProfileSettings` is the base of the settings dataclass of each paper: its
:meth:`~ProfileSettings.for_profile` takes the class defaults, applies the profile's values
(``PROFILES[profile]``), then the overrides, dropping the ``None`` ones and rejecting unknown
names with the list of known ones. Under ``make smoke`` (``ECGKIT_SMOKE=1``) the full profile also
takes the class's ``SMOKE`` values, its toy sizes, kept beside ``PROFILES``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping

PROFILES = ("quick", "full")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

#: every environment variable ecgkit reads: name -> (what, default)
ENVIRONMENT = {
    "ECGKIT_PTBXL": ("a PTB-XL folder (holding `ptbxl_database.csv`, `records100/`, `records500/`)",
                     "none: synthetic cohort"),
    "ECGKIT_DELINEATION": ("a folder of ECGs with cardiologists' wave boundaries (LUDB, QT Database: prepared "
                           "`.npz` files or PhysioNet's layout) to train and score the delineator on",
                           "none: the shipped delineator's recorded scores"),
    "ECGKIT_PROFILE": ("`quick` or `full`", "`quick`"),
    "ECGKIT_CACHE": ("converted models, signal caches, synthetic cohorts, generations", "`~/.cache/ecgkit`"),
    "ECGKIT_RESULTS": ("results files", "`_build/results`"),
    "ECGKIT_LLM": ("a local model folder or a hub id instead of the default LLM", "SmolLM2-135M-Instruct"),
    "ECGKIT_TEXT_ENCODER": ("a local model folder or a hub id instead of the default text encoder",
                            "all-MiniLM-L6-v2"),
    "ECGKIT_ALLOW_DOWNLOAD": ("`1`: allow hub downloads (off: everything offline)", "off"),
    "HF_HUB_OFFLINE": ("`0` also allows hub downloads (Hugging Face's own switch)", "offline"),
    "ECGKIT_LLM_BASE_URL": ("an OpenAI-compatible endpoint (vLLM, llama.cpp server, hosted model) used "
                            "instead of the local LLM", "none: local model, nothing leaves the machine"),
    "ECGKIT_LLM_MODEL": ("the endpoint's model name", "the endpoint's first model"),
    "ECGKIT_LLM_API_KEY": ("the endpoint's key (read from the environment only)", "none"),
    "ECGKIT_LLM_THREADS": ("torch threads for the local LLM (1 helps on a busy machine)", "torch's default"),
    "ECGKIT_LLM_TIMEOUT": ("seconds an endpoint request may take before it is retried", "60"),
    "ECGKIT_SMOKE": ("`1`: the full profile's code paths at toy sizes (set by `make smoke`)", "off"),
    "ECGKIT_KNOWLEDGE_EXTRA": ("your own markdown/text/PDF files for the knowledge base, e.g. "
                               "`documents=/path/a:expert=/path/b`", "none"),
    "ECGKIT_PTBXL_URL": ("where `ecgkit download-ptbxl` fetches PTB-XL from (a mirror)",
                         "PhysioNet's PTB-XL 1.0.3"),
    "ECGKIT_ECGLLM_RATINGS": ("a folder of filled expert rating sheets of chapter 08 (one CSV per rater), "
                              "imported when the notebook's `filled_sheets` is not set", "none: no expert layer"),
}


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _threads(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"ECGKIT_LLM_THREADS must be a whole number, not {value!r}") from None


def _seconds(value: str | None) -> float:
    if value is None:
        return 60.0
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"ECGKIT_LLM_TIMEOUT must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"ECGKIT_LLM_TIMEOUT must be positive, not {value!r}")
    return seconds


def _profile_name(value: str | None) -> str:
    value = value or "quick"
    if value not in PROFILES:
        raise ValueError(f"unknown profile {value!r}; choose one of {PROFILES}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything ecgkit takes from the environment (see :data:`ENVIRONMENT`)."""

    profile: str = "quick"
    ptbxl: str | None = None
    delineation: str | None = None
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "ecgkit")
    results: Path | None = None
    llm: str | None = None
    text_encoder: str | None = None
    allow_download: bool = False
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_threads: int | None = None
    llm_timeout: float = 60.0
    smoke: bool = False
    knowledge_extra: str | None = None
    ptbxl_url: str | None = None
    ecgllm_ratings: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        cache = _text(env, "ECGKIT_CACHE")
        results = _text(env, "ECGKIT_RESULTS")
        hub = (env.get("HF_HUB_OFFLINE") or "").strip().lower()
        return cls(
            profile=_profile_name(_text(env, "ECGKIT_PROFILE")),
            ptbxl=_text(env, "ECGKIT_PTBXL"),
            delineation=_text(env, "ECGKIT_DELINEATION"),
            cache=Path(cache).expanduser() if cache else Path.home() / ".cache" / "ecgkit",
            results=Path(results).expanduser() if results else None,
            llm=_text(env, "ECGKIT_LLM"),
            text_encoder=_text(env, "ECGKIT_TEXT_ENCODER"),
            allow_download=(env.get("ECGKIT_ALLOW_DOWNLOAD") or "").strip().lower() in _TRUE
            or hub in _FALSE,
            llm_base_url=_text(env, "ECGKIT_LLM_BASE_URL"),
            llm_model=_text(env, "ECGKIT_LLM_MODEL"),
            llm_api_key=env.get("ECGKIT_LLM_API_KEY"),
            llm_threads=_threads(_text(env, "ECGKIT_LLM_THREADS")),
            llm_timeout=_seconds(_text(env, "ECGKIT_LLM_TIMEOUT")),
            smoke=(env.get("ECGKIT_SMOKE") or "0").strip() not in ("", "0"),
            knowledge_extra=_text(env, "ECGKIT_KNOWLEDGE_EXTRA"),
            ptbxl_url=_text(env, "ECGKIT_PTBXL_URL"),
            ecgllm_ratings=_text(env, "ECGKIT_ECGLLM_RATINGS"),
        )

    @property
    def endpoint_configured(self) -> bool:
        """True when an OpenAI-compatible endpoint is set (it replaces the local LLM)."""
        return bool(self.llm_base_url)


def settings() -> Settings:
    """The current settings (the environment as it is now)."""
    return Settings.from_env()


def profile(value: str | None = None) -> str:
    """The active profile, checked against the known ones."""
    return _profile_name(value or settings().profile)


class ProfileSettings:
    """Base of the per-paper settings dataclasses: ``PROFILES`` maps a profile to its values;
    ``SMOKE`` holds the full profile's toy sizes for ``make smoke`` (sizes only, never branches:
    the values no notebook parameter reaches; the notebooks' own are in ``ecgkit.smoke.NOTEBOOKS``)."""

    PROFILES: ClassVar[Mapping[str, Mapping]] = {}
    SMOKE: ClassVar[Mapping] = {}

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides):
        """The class defaults, then the profile's values (under ``make smoke``, the full profile's
        followed by ``SMOKE``), then ``overrides`` (``None`` ones dropped)."""
        name = _profile_name(profile or settings().profile)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(known)}")
        smoke = cls.SMOKE if name == "full" and settings().smoke else {}
        values = {**cls.PROFILES.get(name, {}), **smoke, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def cache_dir(*parts: str, root: str | os.PathLike | None = None) -> Path:
    """A folder under the ecgkit cache (or under ``root``), created on demand."""
    base = Path(root) if root is not None else settings().cache
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_root(start: Path | None = None) -> Path:
    """The book's root (the folder holding ``_toc.yml``) above ``start``, else ``start``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file() and (folder / "ecgkit").is_dir():
            return folder
    return start


def results_dir() -> Path:
    """``$ECGKIT_RESULTS``, else ``_build/results`` in the book's root."""
    path = settings().results or project_root() / "_build" / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ptbxl_dir(value: str | os.PathLike | None = None) -> Path | None:
    """The PTB-XL folder to use, or None when there is none (use the synthetic cohort)."""
    value = value or settings().ptbxl or ""
    if not str(value):
        return None
    path = Path(value).expanduser()
    if not (path / "ptbxl_database.csv").is_file():
        raise FileNotFoundError(
            f"{path} is not a PTB-XL folder: ptbxl_database.csv is missing "
            "(set ECGKIT_PTBXL to the folder that holds ptbxl_database.csv and records100/records500)"
        )
    return path.resolve()
