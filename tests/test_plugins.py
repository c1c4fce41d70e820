"""Custom strategies and scorers are plug-ins registered through entry points, never code in a task file."""
from __future__ import annotations

import textwrap

import pytest
from advisor.scoring import score
from advisor.task import TaskError, load_task
from strategies import registry
from tests.conftest import write_task

PLUGIN = '''
from strategies.base import Strategy, fewshot_messages

class Terse(Strategy):
    name = "terse"
    description = "a one-line instruction (plug-in)"
    complexity = 0
    family = "prompting"

    def messages(self, text, drop=0):
        return fewshot_messages("Answer in one line.", [], text)

def shouting(answer, example):
    return float(answer.isupper())
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    (site / "advisor_demo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "advisor_demo_plugin.py").write_text(PLUGIN)
    (site / "advisor_demo_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: advisor-demo-plugin\nVersion: 0.1\n")
    (site / "advisor_demo_plugin-0.1.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""
        [advisor.strategies]
        terse = advisor_demo_plugin:Terse
        [advisor.scorers]
        shouting = advisor_demo_plugin:shouting
    """))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_strategy_becomes_a_row_and_plugin_scorer_scores(installed_plugin, tmp_path):
    assert "terse" in registry()
    root = write_task(tmp_path / "task", scoring={"method": "shouting"}, strategies=["terse", "few-shot"])
    task = load_task(root)
    assert score("HELLO THERE", task.eval[0], task.spec.scoring) == 1.0
    assert score("hello", task.eval[0], task.spec.scoring) == 0.0


def test_unknown_method_is_an_error_and_task_files_cannot_name_code(tmp_path):
    root = write_task(tmp_path / "a", scoring={"method": "os.system"})
    with pytest.raises(TaskError, match=r"scoring.method.*unknown scoring method 'os.system'"):
        load_task(root)
    root = write_task(tmp_path / "b", scoring={"method": "contains", "by_tag": {"style": "shouting"}})
    with pytest.raises(TaskError, match=r"scoring.by_tag.style.*unknown scoring method 'shouting'"):
        load_task(root)
    # YAML tags that construct Python objects are refused by the safe loader.
    root = write_task(tmp_path / "c")
    spec = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(spec + "seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(TaskError, match="invalid YAML"):
        load_task(root)
