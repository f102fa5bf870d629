"""ecgkit.config: one settings object, one for_profile; the README's settings table matches it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecgkit import config
from ecgkit.config import ENVIRONMENT, ProfileSettings, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_settings_table_names_every_documented_variable():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Settings"):]
    table = table[:table.index("\n\n", table.index("| variable"))]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    named = {m for cell in first_cells for m in re.findall(r"`((?:ECGKIT|HF)_[A-Z_]+)", cell)}
    assert named == set(ENVIRONMENT)


def test_no_environment_reads_outside_config():
    """The files of the shared layer read the environment only through ecgkit.config."""
    shared = ["ecgkit/models.py", "ecgkit/cache.py", "ecgkit/vocabulary.py",
              "ecgkit/metrics.py", *map(str, (ROOT / "ecgkit").glob("data/**/*.py")),
              *map(str, (ROOT / "ecgkit").glob("knowledge/*.py")),
              *map(str, (ROOT / "ecgkit").glob("clinical/*.py")),
              *map(str, (ROOT / "ecgkit").glob("benchmarks/*.py")),
              *map(str, (ROOT / "ecgkit").glob("llm/*.py")),
              *[str(p) for p in (ROOT / "ecgkit").glob("alfred/*.py")
                if p.name not in ("probabilities.py", "evaluate.py", "report.py")]]
    for name in shared:
        assert "os.environ" not in (ROOT / name).read_text(), name


def test_settings_from_env(tmp_path):
    cache, ratings = tmp_path / "cache", tmp_path / "ratings"
    s = Settings.from_env({"ECGKIT_PROFILE": "full", "ECGKIT_LLM_THREADS": " 3 ", "ECGKIT_CACHE": str(cache),
                           "ECGKIT_LLM_BASE_URL": "http://x/v1", "ECGKIT_LLM_API_KEY": "secret",
                           "ECGKIT_PTBXL_URL": "http://mirror/", "ECGKIT_ECGLLM_RATINGS": str(ratings)})
    assert (s.profile, s.llm_threads, s.cache, s.endpoint_configured) == ("full", 3, cache, True)
    assert (s.ptbxl_url, s.ecgllm_ratings) == ("http://mirror/", str(ratings))
    assert "secret" not in repr(s)
    empty = Settings.from_env({"ECGKIT_LLM_BASE_URL": "  ", "ECGKIT_LLM_THREADS": ""})
    assert not empty.endpoint_configured and empty.llm_threads is None and empty.profile == "quick"
    assert Settings.from_env({"HF_HUB_OFFLINE": "0"}).allow_download
    assert Settings.from_env({"ECGKIT_ALLOW_DOWNLOAD": "1"}).allow_download
    assert not Settings.from_env({"HF_HUB_OFFLINE": "1"}).allow_download
    with pytest.raises(ValueError, match="ECGKIT_LLM_THREADS must be a whole number"):
        Settings.from_env({"ECGKIT_LLM_THREADS": "two"})
    with pytest.raises(ValueError, match="unknown profile 'medium'"):
        Settings.from_env({"ECGKIT_PROFILE": "medium"})


def test_settings_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path))
    assert config.cache_dir("x") == tmp_path / "x" and (tmp_path / "x").is_dir()
    assert config.cache_dir("y", root=tmp_path / "other") == tmp_path / "other" / "y"
    monkeypatch.setenv("ECGKIT_PROFILE", "full")
    assert config.profile() == "full" and config.profile("quick") == "quick"


@dataclass(frozen=True)
class _Demo(ProfileSettings):
    steps: int = 10
    lr: float = 0.1
    limit: int | None = None

    PROFILES = {"full": dict(steps=1000)}


def test_for_profile_drops_none_and_rejects_unknown_names():
    assert _Demo.for_profile("quick") == _Demo()
    assert _Demo.for_profile("full") == _Demo(steps=1000)
    assert _Demo.for_profile("full", steps=None, lr=0.5) == _Demo(steps=1000, lr=0.5)
    with pytest.raises(TypeError, match=r"_Demo: unknown setting\(s\) \['stpes'\]; known: \['limit', 'lr', 'steps'\]"):
        _Demo.for_profile("quick", stpes=3)
    with pytest.raises(ValueError, match="unknown profile"):
        _Demo.for_profile("medium")


def test_paper_settings_use_the_one_for_profile():
    from ecgkit.alfred.delineation import DelineatorSettings
    from ecgkit.alfred.prompt import PromptBudget
    from ecgkit.clinical.train import TransferConfig
    from ecgkit.data.sources import CohortSettings

    for cls in (DelineatorSettings, PromptBudget, TransferConfig, CohortSettings):
        assert cls.for_profile.__func__ is ProfileSettings.for_profile.__func__, cls
    assert PromptBudget.for_profile("quick").max_chars == 4800 and PromptBudget.for_profile("full").max_chars is None
    assert PromptBudget.for_profile("quick").max_new_tokens == 32 and PromptBudget.for_profile("full").max_new_tokens == 400
    assert PromptBudget.for_profile("quick", max_chars=None).max_chars == 4800
    assert PromptBudget.for_profile("quick", max_chars=3000).max_chars == 3000
    with pytest.raises(TypeError, match="PromptBudget: unknown setting"):
        PromptBudget.for_profile("quick", max_char=3000)
    assert TransferConfig.for_profile("full").pretrain_steps == 4000
    assert TransferConfig.for_profile("quick", crop_seconds=None).crop_seconds == 5.0
    assert CohortSettings.for_profile("full").n_records == 5000
